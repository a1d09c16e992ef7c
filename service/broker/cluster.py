"""The Redis Cluster broker (`REDIS_CLUSTER_NODES`): a room's keys and shard channel share its
hash slot (`keys.TAGGED`), every command goes to the primary serving that slot, and live
delivery is sharded pub/sub, per room, on that primary.

The commands are `RedisBroker`'s (the publish script, history, window, plain PUBLISH storing),
run through redis-py's `RedisCluster`, which routes by key and follows `MOVED`. Live delivery
is this module's: one `cluster_reader.Session` per primary, each its own task, holding the
`SSUBSCRIBE`s of the rooms whose slots it serves, plus one classic `PSUBSCRIBE room:*:logs` on
any node for plain `PUBLISH` publishers (a Cluster broadcasts classic pub/sub to every node).
Which rooms are wanted (linger, batches, confirmation waits) is `interest.Interest`'s.

A control task owns the topology: when a session ends (a lost connection, `MOVED`, a pushed
`sunsubscribe`, a silent node) or a room's subscription is pushed away, it re-reads the slot map
(`CLUSTER SLOTS`, through redis-py's nodes manager), with a backoff, starts sessions on the
current primaries, places the rooms again and, once each is confirmed, catches it up from
history after the last id its streams received. Readiness is LIVE only while every primary's
session and the classic one are subscribed. docs/cluster.md says what redis-py does not do.

PUBLISH_REPLICAS: `WAIT` counts the writes of the connection it runs on, and redis-py's
cluster client sends it to its default node, so such a publish runs the script and `WAIT` on
one pooled connection of this broker's own client of the primary serving the room's slot
(`_replica_client`, one per primary, dropped when it serves no slot). That node answering
`MOVED`/`ASK` means the script did not run: the slot map is read again, and the publish is a
503 (retried by the publisher, it lands on the new owner).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Final, TypeVar, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.crc import key_slot
from redis.exceptions import AskError, ClusterDownError, RedisClusterException, TryAgainError

from ..settings import Settings
from ._errors import explain
from .base import BrokerEvents, BrokerState, BrokerUnavailable, PublishOutcomeUnknown
from .cluster_reader import Kind, Session
from .cluster_slots import (
    Addr,
    SlotMap,
    connection_options,
    node_of_slot,
    node_pool,
    slot_primaries,
)
from .interest import Interest
from .keys import TAGGED
from .redis import CLOSE_DRAIN, RedisBroker
from .script import (
    SHARDED_PERMISSIONS_SCRIPT,
    SHARDED_PLAIN_SCRIPT,
    SHARDED_PUBLISH_SCRIPT,
    KeyReused,
)

log = logging.getLogger("service.broker")

T = TypeVar("T")

TOPOLOGY_POLL: Final = 5.0  # seconds between slot-map polls while nothing else happens
LISTEN_TIMEOUT: Final = 5.0  # seconds a stream waits for its rooms' SSUBSCRIBE confirmation
CLASSIC_MARKER: Final = "roomlogs:classic"  # SUBSCRIBE_MODE=rooms: the classic session's first


class ClusterBroker(RedisBroker):
    """Also the `cluster_reader.SessionOwner` of its sessions."""

    keyspace = TAGGED
    publish_script = SHARDED_PUBLISH_SCRIPT
    plain_script = SHARDED_PLAIN_SCRIPT
    permissions_script = SHARDED_PERMISSIONS_SCRIPT
    coalesce = False  # each publish its own call: redis-py's cluster pipeline refuses evalsha()
    # A plain log's store is retried through a failover too, whatever redis-py's cluster
    # client raises meanwhile (its claim makes a resend harmless; given up after RETRY_FOR).
    transient_errors = (Exception,)

    def __init__(self, settings: Settings, events: BrokerEvents) -> None:
        self._settings = settings
        # PUBLISH_REPLICAS: a client of each primary that ran a publish, by address.
        self._node_clients: dict[Addr, aioredis.Redis] = {}
        super().__init__(settings, events)
        self._backoff = ExponentialWithJitterBackoff(cap=2.0, base=0.05)
        self._wake = asyncio.Event()
        self._interest = Interest(settings.unsubscribe_linger, self._wake.set)
        # SUBSCRIBE_MODE=rooms: the classic channel by one SUBSCRIBE per room, its own interest
        # (a plain PUBLISH to a room no stream here watches is then stored by other gateways
        # only); pattern: one PSUBSCRIBE, and every plain log is stored whoever watches.
        self._classic_interest: Interest | None = (
            Interest(settings.unsubscribe_linger, self._wake.set)
            if settings.subscribe_mode == "rooms"
            else None
        )
        self._slots = SlotMap()
        self._sessions: dict[Addr, Session] = {}  # one per primary
        self._classic: Session | None = None
        self._placed: dict[str, Session] = {}  # room -> the session holding its SSUBSCRIBE
        # Room -> when its SSUBSCRIBE was first confirmed (kept through resubscribes): a room
        # whose streams got no log yet is caught up from there, not from when the loss was
        # noticed (a stalled node is noticed seconds late, by the probe or the poll).
        self._since_ms: dict[str, int] = {}
        self._stale = True  # the slot map must be read again before rooms are placed
        self._failures = 0
        self._closing: set[asyncio.Task[None]] = set()  # sessions of demoted nodes, ending

    def _make_client(self, settings: Settings) -> aioredis.Redis:
        nodes = [ClusterNode(host, port) for host, port in settings.redis_cluster_nodes]
        # No retries inside redis-py on connection errors (`_call` decides what is safe to
        # send again); MOVED/ASK redirects are still followed, they ran nothing.
        self._cluster = RedisCluster(
            startup_nodes=nodes,
            require_full_coverage=False,
            retry=Retry(NoBackoff(), retries=0),
            max_connections=settings.redis_pool_size,
            socket_connect_timeout=2.0,
            socket_timeout=5.0,
            health_check_interval=10,
            protocol=2,
            **connection_options(self._settings),
        )
        # The commands RedisBroker runs (scripts, XRANGE, XINFO, EXISTS, a pipeline) exist on
        # both clients with one signature; this is the one place that leans on it.
        return cast(aioredis.Redis, self._cluster)

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._control(), name="roomlogs-cluster-control"),
            asyncio.create_task(self._plain.run(), name="roomlogs-plain-writer"),
        ]
        self._wake.set()

    async def close(self) -> None:
        if self._tasks and not self._tasks[1].done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_DRAIN):
                    await self._plain.drained()
        self._set_state(BrokerState.CLOSED, "closed")
        for interest in self._interests:
            interest.clear()
        for task in self._tasks:
            task.cancel()
        sessions = [*self._sessions.values(), *([self._classic] if self._classic else [])]
        for session in sessions:
            await session.close()
        for addr in list(self._node_clients):
            self._drop_node_client(addr)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._cluster.aclose()

    # -- the hub's room events -----------------------------------------------------------

    @property
    def _interests(self) -> list[Interest]:
        return [self._interest, *([self._classic_interest] if self._classic_interest else [])]

    def subscribe(self, rooms: Collection[str]) -> None:
        super().subscribe(rooms)
        for interest in self._interests:
            interest.open(rooms)

    def unsubscribe(self, rooms: Collection[str]) -> None:
        super().unsubscribe(rooms)
        for interest in self._interests:
            interest.close(rooms)

    async def listening(self, rooms: Collection[str]) -> None:
        try:
            async with asyncio.timeout(LISTEN_TIMEOUT):
                for interest in self._interests:
                    await interest.until_subscribed(rooms)
        except TimeoutError:
            raise BrokerUnavailable(
                f"the cluster did not confirm a room's SSUBSCRIBE within {LISTEN_TIMEOUT:.0f}s"
            ) from None

    # -- the control task ----------------------------------------------------------------

    async def _control(self) -> None:
        while self.state is not BrokerState.CLOSED:
            try:
                async with asyncio.timeout(TOPOLOGY_POLL):
                    await self._wake.wait()
            except TimeoutError:
                await self._poll()
                if not self._stale:
                    continue
            self._wake.clear()
            try:
                if self._failures:
                    await asyncio.sleep(self._backoff.compute(self._failures))
                if self._stale:
                    await self._secret_again()
                    await self._refresh()
                self._place()
                self._update_state()
            except Exception as exc:  # the control task must outlive anything Redis does
                self._failures += 1
                self._stale = True
                self._went_down(f"redis cluster unreachable: {self._explain(exc)}")
                log.warning("redis cluster topology not read (%s)", self._explain(exc))
                self._wake.set()

    async def _poll(self) -> None:
        """Ask one node for the slot map, and read it again (which recycles redis-py's pooled
        connections) only when a slot has another primary: a stalled or partitioned primary
        pushes nothing, and its replica's promotion is noticed here within TOPOLOGY_POLL."""
        try:
            slots = await self._cluster.cluster_slots(target_nodes=RedisCluster.RANDOM)
        except Exception as exc:  # that node may be the stalled one: the next poll asks another
            log.debug("redis cluster slot map not polled (%s)", self._explain(exc))
            return
        for start, primary in slot_primaries(slots):
            if self._slots.owners.get(start) != primary:
                log.info("redis cluster slot map changed (slot %d)", start)
                self._stale = True
                return

    async def _secret_again(self) -> None:
        """The envelope secret before anything is received; re-read (as RedisBroker does on
        every resubscribe) when known, but then not at the price of the resubscribe: its key
        lives on one shard, and a failover elsewhere must not wait for that one."""
        if self.envelopes is None:
            await self._read_secret()
            return
        try:
            await self._read_secret()
        except Exception as exc:  # known already: the next refresh tries again
            log.info("envelope secret not re-read (%s)", self._explain(exc))

    async def _refresh(self) -> None:
        """Read the slot map again; start a session on every primary that has none, end the
        sessions of nodes that serve no slot any more (a demoted primary)."""
        await self._slots.read(self._cluster)
        self._stale = False
        primaries = self._slots.primaries
        for room, session in list(self._placed.items()):
            if self._slots.owner(self._keys.channel(room)) != session.addr:
                # Moved without the pushed sunsubscribe reaching us: that node serves the
                # slot no more, so its subscription is silent; placed again and caught up.
                session.forget(room)
                self.room_ended(session, room, asked=False)
        for addr, session in list(self._sessions.items()):
            if addr not in primaries:
                log.info("redis cluster node %s serves no slots now", session.name)
                self._forget(session, "serves no slots")
                closing = asyncio.create_task(session.close())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
        for addr in self._node_clients.keys() - primaries:
            self._drop_node_client(addr)
        for addr in primaries - self._sessions.keys():
            self._sessions[addr] = self._session(addr, "shard", self._slots.marker(addr))
        if self._classic is None:
            addr = random.choice(sorted(primaries))  # noqa: S311 (load spreading)
            if self._classic_interest is None:
                self._classic = self._session(addr, "pattern", self._keys.pattern)
            else:
                self._classic = self._session(addr, "rooms", CLASSIC_MARKER)

    def _session(self, addr: Addr, kind: Kind, marker: str) -> Session:
        client = aioredis.Redis(
            host=addr[0],
            port=addr[1],
            retry=Retry(NoBackoff(), retries=0),  # a lost connection ends the session
            socket_connect_timeout=2.0,
            socket_timeout=5.0,
            health_check_interval=0,  # our own probe; redis-py's would read beside the reader
            protocol=2,
            **connection_options(self._settings),
        )
        return Session(addr, client, kind, marker, self._keys, self)

    def _place(self) -> None:
        """Send what the interest says: SUNSUBSCRIBE where rooms are held, SSUBSCRIBE on the
        primary that serves each room's slot now."""
        changes = self._interest.take()
        ended = []
        for room in changes.unsubscribe:
            session = self._placed.pop(room, None)
            if session is not None and self._sessions.get(session.addr) is session:
                session.remove([room])
            else:
                ended.append(room)  # its session is gone, and the subscription with it
        if ended:
            for room in ended:
                self._since_ms.pop(room, None)
            self._interest.unsubscribed(ended)
        placing: dict[Addr, list[str]] = {}
        unplaced: list[str] = []
        for room in changes.subscribe:
            addr = self._slots.owner(self._keys.channel(room))
            if addr is None or addr not in self._sessions:
                unplaced.append(room)
                continue
            self._placed[room] = self._sessions[addr]
            placing.setdefault(addr, []).append(room)
        for addr, rooms in placing.items():
            self._sessions[addr].add(rooms, changes.resubscribed.intersection(rooms))
        self._place_classic()
        if unplaced:  # a slot no primary serves (mid-failover): again after a fresh read
            self._interest.lost(unplaced)
            self._stale = True
            self._failures += 1
            self._wake.set()

    def _place_classic(self) -> None:
        """SUBSCRIBE_MODE=rooms: the classic channels' SUBSCRIBE/UNSUBSCRIBE, on one node."""
        interest = self._classic_interest
        if interest is None:
            return
        changes = interest.take()
        session = self._classic
        if session is None:  # gone: its subscriptions with it; placed on the next one
            interest.unsubscribed(changes.unsubscribe)
            interest.lost(changes.subscribe)
            self._stale = True
            self._wake.set()
            return
        session.remove(changes.unsubscribe)
        if changes.subscribe:
            session.add(changes.subscribe, set())

    def _update_state(self) -> None:
        primaries = self._slots.primaries
        live = (
            self.envelopes is not None
            and self._classic is not None
            and self._classic.live
            and bool(primaries)
            and all(addr in self._sessions and self._sessions[addr].live for addr in primaries)
        )
        if live and self.state is not BrokerState.LIVE:
            recovering = self._lost_at_ms is not None
            self._lost_at_ms = None
            self._failures = 0
            self._set_state(BrokerState.LIVE, "live", recovered=recovering)
            log.info(
                "redis cluster subscriptions live on %d primaries%s",
                len(primaries),
                " (recovered)" if recovering else "",
            )
        elif not live and self.state is BrokerState.LIVE:
            self._went_down("redis cluster: a primary's subscription is not live")

    def _forget(self, session: Session, why: str) -> None:
        """`session` holds nothing any more: its rooms are placed again (and caught up)."""
        if self._sessions.get(session.addr) is session:
            del self._sessions[session.addr]
        if session is self._classic:
            self._classic = None
            if self._classic_interest is not None:
                self._classic_interest.lost(list(session.rooms))
        rooms = [room for room, held in self._placed.items() if held is session]
        for room in rooms:
            del self._placed[room]
        self._interest.lost(rooms)
        self._stale = True
        self._went_down(f"redis cluster node {session.name}: {why}")
        self._wake.set()

    # -- SessionOwner --------------------------------------------------------------------

    def on_messages(self, batch: list[tuple[bytes, bytes]]) -> None:
        self.events.on_messages(batch)

    def session_live(self, session: Session) -> None:
        log.info("redis cluster %s subscription on %s confirmed", session.kind, session.name)
        self._update_state()

    async def room_confirmed(self, session: Session, room: str) -> None:
        if session.kind == "rooms":  # a classic channel: plain logs, nothing to catch up
            if session is self._classic and self._classic_interest is not None:
                self._classic_interest.subscribed((room,))
            return
        if self._placed.get(room) is not session:
            return  # placed elsewhere since: that session confirms it
        self._interest.subscribed((room,))
        since = self._since_ms.setdefault(room, time.time_ns() // 1_000_000)
        if room in session.catch_up:
            session.catch_up.discard(room)
            # Awaited inside the session's reader: its later messages wait, so the room's
            # logs stay in order (a log both caught up and live is delivered once). 1 s
            # before `since`: the ids are the primaries' clocks.
            await self._catch_up_room(room, f"{max(since - 1000, 0)}-0")

    def room_ended(self, session: Session, room: str, *, asked: bool) -> None:
        if session.kind == "rooms":
            if session is self._classic and self._classic_interest is not None:
                self._classic_interest.unsubscribed((room,))
            return
        if self._placed.get(room) is session:
            del self._placed[room]
        if not asked:  # pushed: the slot moved (a failover, a migration)
            log.info("redis cluster moved room=%s away from %s", room, session.name)
            self._stale = True
            self._wake.set()
        elif room not in self._interest.wanted:
            self._since_ms.pop(room, None)  # gone for good
        self._interest.unsubscribed((room,))

    def session_lost(self, session: Session, exc: BaseException) -> None:
        reason = self._explain(exc)
        log.warning(
            "redis cluster %s subscription on %s lost (%s)", session.kind, session.name, reason
        )
        self._failures += 1
        self._forget(session, reason)

    def _explain(self, exc: BaseException) -> str:
        return explain(exc, client_cert=self._client_cert)

    # -- commands ------------------------------------------------------------------------

    def _replica_client(self, room: str) -> aioredis.Redis:
        """PUBLISH_REPLICAS: the client of the primary that serves `room`'s slot in redis-py's
        slot cache (where its other commands are routed), made on first use. A pooled
        connection of it runs the script and then WAIT (replicas.py)."""
        addr = node_of_slot(self._cluster, key_slot(self._keys.history(room).encode()))
        if addr is None:
            raise BrokerUnavailable("redis cluster: no primary serves the room's slot now")
        client = self._node_clients.get(addr)
        if client is None:
            pool = node_pool(addr, self._settings)
            client = self._node_clients[addr] = aioredis.Redis(connection_pool=pool)
        return client

    def _drop_node_client(self, addr: Addr) -> None:
        """`addr` serves no slot (or the broker closes): its publish client goes at once, and
        is closed in the background (a publish still on it fails as a lost connection: 504
        when it may have run, and a keyed one's resend goes to the slot's new owner)."""
        client = self._node_clients.pop(addr, None)
        if client is None:
            return

        async def aclose() -> None:
            with contextlib.suppress(Exception):
                await client.aclose(close_connection_pool=True)

        closing = asyncio.create_task(aclose())
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def _call(
        self,
        call: Callable[[], Awaitable[T]],
        *,
        resend_safe: bool,
        writes: bool = True,
        room: str | None = None,
    ) -> T:
        """RedisBroker's, and redis-py's cluster errors that are no `RedisError` (no node
        serves the slot, no node answers) as 503s: they are raised before anything is sent.
        Anything else redis-py's cluster client raises mid-failover (its slot cache changing
        under a command) is a 503 for a read and, since it may have been sent, an unknown
        outcome for a write: never a 500."""
        try:
            return await super()._call(call, resend_safe=resend_safe, writes=writes, room=room)
        except BrokerUnavailable as exc:
            redirect = exc.__cause__
            if not isinstance(redirect, (AskError, TryAgainError, ClusterDownError)):
                raise
            # A node client (PUBLISH_REPLICAS) hands these back as they come (redis-py's
            # cluster client follows MOVED/ASK, and gives CLUSTERDOWN up only after its own
            # retries): the node refused the command before running it, so nothing was
            # stored (a 503), and the slot map is read again for the publisher's retry.
            self._stale = True
            self._wake.set()
            log.info("redis cluster node redirected a publish (%s)", self._explain(redirect))
            raise BrokerUnavailable(
                f"redis cluster: {self._explain(redirect)} (the slot map is read again)"
            ) from redirect
        except RedisClusterException as exc:
            raise BrokerUnavailable(f"redis cluster: {self._explain(exc)}") from exc
        except (PublishOutcomeUnknown, KeyReused):
            raise
        except Exception as exc:
            log.warning("redis cluster client failed (%r)", exc, exc_info=True)
            reason = f"redis cluster client: {type(exc).__name__}"
            if writes:
                raise PublishOutcomeUnknown(reason) from exc
            raise BrokerUnavailable(reason) from exc
