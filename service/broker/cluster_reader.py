"""One pub/sub connection to one Redis Cluster node, read by its own task: the broker runs one
per primary (sharded `SSUBSCRIBE`, one per room whose slot that primary serves) and one for the
classic channel on any node (`PSUBSCRIBE room:*:logs`, or with `SUBSCRIBE_MODE=rooms` one
`SUBSCRIBE room:R:logs` per room), all concurrently.

Not redis-py's `ClusterPubSub`: its `get_sharded_message` polls the nodes one after another
(each idle node costs the whole timeout), it never follows a failover for a subscriber that
sends no command, and it hands a pushed `sunsubscribe` to the caller without resubscribing
(RESEARCH-SCALEOUT.md §1.3). A session here is one connection's life: it ends on the first
sign that the topology moved under it (an error reply such as `MOVED`, a lost connection, the
`sunsubscribe` Redis pushes for its node's own marker channel when the node stops serving that
slot, a silent connection) and tells its owner, which re-reads the topology, places the rooms
on their current primaries and catches them up from history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final, Literal, Protocol

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub

from . import _batch_read
from ._errors import SubscriptionStalled
from .keys import KeySpace, room_from_channel
from .redis import PROBE, PROBE_IDLE, PROBE_TIMEOUT, READ_TIMEOUT

log = logging.getLogger("service.broker")

# shard: a primary's SSUBSCRIBEs; pattern / rooms: the classic channel, by PSUBSCRIBE or by
# one SUBSCRIBE per room.
Kind = Literal["shard", "pattern", "rooms"]
SUBSCRIBE: Final = {"shard": "SSUBSCRIBE", "pattern": "PSUBSCRIBE", "rooms": "SUBSCRIBE"}
UNSUBSCRIBE: Final = {"shard": "SUNSUBSCRIBE", "rooms": "UNSUBSCRIBE"}
_SUBSCRIBED: Final = frozenset(("ssubscribe", "psubscribe", "subscribe"))
_UNSUBSCRIBED: Final = frozenset(("sunsubscribe", "unsubscribe"))


class TopologyMoved(Exception):
    """Redis ended this node's marker subscription: the node no longer serves that slot (a
    failover demoted it, or the slot migrated). Every room here is placed again."""


class NotPrimary(Exception):
    """The slot map named a node that is a replica now (read from a node not yet told of a
    failover): nothing is subscribed there, and the map is read again."""


class SessionOwner(Protocol):
    """What a session reports (the Cluster broker implements it)."""

    def on_messages(self, batch: list[tuple[bytes, bytes]]) -> None: ...

    def session_live(self, session: Session) -> None:
        """The marker subscription is confirmed: the connection is up and serves its slots."""

    async def room_confirmed(self, session: Session, room: str) -> None:
        """Redis confirmed `room`'s SSUBSCRIBE here; awaited before anything later is read."""

    def room_ended(self, session: Session, room: str, *, asked: bool) -> None:
        """`room`'s subscription here ended: confirmed (`asked`), or pushed by Redis."""

    def session_lost(self, session: Session, exc: BaseException) -> None:
        """The connection is gone (or its node stopped serving): its rooms need a new home."""


class Session:
    """One connection to `addr`: `marker` subscribed first (its confirmation means live), then
    the rooms `add` hands it. Sends happen in a writer task beside the reader, so a stream's
    SSUBSCRIBE goes out at once rather than after the reader's next timeout (redis-py's own
    health check is off on this connection: it would read from the writer's side)."""

    def __init__(
        self,
        addr: tuple[str, int],
        client: aioredis.Redis,
        kind: Kind,
        marker: str,
        keys: KeySpace,
        owner: SessionOwner,
    ) -> None:
        self.addr = addr
        self.kind = kind
        self.marker = marker.encode()
        self.live = False
        self.closed = False
        # Rooms subscribed here or on their way; those to catch up once confirmed.
        self.rooms: set[str] = set()
        self.catch_up: set[str] = set()
        self._client = client
        self._keys = keys
        self._owner = owner
        self._outbox: list[tuple[str, list[str]]] = [(SUBSCRIBE[kind], [marker])]
        self._send = asyncio.Event()
        self._send.set()
        self._asked_off: set[str] = set()  # SUNSUBSCRIBE sent, confirmation awaited
        self.task = asyncio.create_task(self._run(), name=f"roomlogs-cluster-{kind}-{addr[1]}")

    @property
    def name(self) -> str:
        return f"{self.addr[0]}:{self.addr[1]}"

    def add(self, rooms: list[str], catch_up: set[str]) -> None:
        """SSUBSCRIBE these rooms' shard channels here (SUBSCRIBE their classic channels, for
        kind "rooms"); those in `catch_up` are read from history after their confirmation
        (they were subscribed before, elsewhere)."""
        self.rooms.update(rooms)
        self.catch_up.update(catch_up)
        command = SUBSCRIBE[self.kind]
        # One command per room: rooms hash to different slots, and one SSUBSCRIBE naming
        # several slots is refused (CROSSSLOT). They are sent back to back, not awaited.
        self._outbox.extend((command, [self._channel(room)]) for room in rooms)
        self._send.set()

    def _channel(self, room: str) -> str:
        return self._keys.classic(room) if self.kind == "rooms" else self._keys.channel(room)

    def remove(self, rooms: list[str]) -> None:
        for room in rooms:
            if room in self.rooms:
                self.catch_up.discard(room)
                self._asked_off.add(room)
                self._outbox.append((UNSUBSCRIBE[self.kind], [self._channel(room)]))
        self._send.set()

    def forget(self, room: str) -> None:
        """Drop `room` here without telling Redis: this node no longer serves its slot."""
        self.rooms.discard(room)
        self.catch_up.discard(room)

    async def close(self) -> None:
        self.closed = True
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    # -- the connection's life -------------------------------------------------------------

    async def _run(self) -> None:
        pubsub = self._client.pubsub()
        writer: asyncio.Task[None] | None = None
        reader: asyncio.Task[None] | None = None
        try:
            # Connected before the writer starts: one task makes the connection.
            await pubsub.connect()  # type: ignore[no-untyped-call]
            if self.kind == "shard":
                await self._check_primary(pubsub)
            _batch_read.announce(pubsub)
            writer = asyncio.create_task(self._write(pubsub))
            reader = asyncio.create_task(self._read(pubsub))
            done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # the first failure ends the session
            raise ConnectionError("the session ended")  # pragma: no cover - both loop forever
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # anything Redis does to it ends this session, not the broker
            self.live = False
            if not self.closed:
                self._owner.session_lost(self, exc)
        finally:
            self.live = False
            for pending in (writer, reader):
                if pending is not None:
                    pending.cancel()
                    with contextlib.suppress(BaseException):
                        await pending
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            with contextlib.suppress(Exception):
                await self._client.aclose()

    async def _check_primary(self, pubsub: PubSub) -> None:
        """Refuse to subscribe on a node that is not a primary (now), before the first
        SSUBSCRIBE: a replica accepts one for its primary's slots, but the slot map that named
        it was read from a node that had not yet heard of a failover, and a replica just
        demoted is not yet counted in its new primary's shard, so it may miss the sharded
        messages published meanwhile (and nothing would push a `sunsubscribe` for them: the
        demotion that pushes it is over). The session then ends; the map is read again."""
        connection = pubsub.connection
        assert connection is not None  # connected just before
        await connection.send_command("ROLE")
        reply = await connection.read_response()
        role = reply[0] if isinstance(reply, list) and reply else reply
        if role not in (b"master", "master"):
            raise NotPrimary(f"{self.name} is not a primary (ROLE: {role!r}); stale slot map")

    async def _write(self, pubsub: PubSub) -> None:
        while True:
            await self._send.wait()
            self._send.clear()
            while self._outbox:
                command, channels = self._outbox.pop(0)
                await pubsub.execute_command(command, *channels)

    async def _read(self, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        heard = loop.time()  # when the connection last said anything
        probed: float | None = None  # when the unanswered probe was sent
        on_messages = self._owner.on_messages
        while True:
            msg: dict[str, Any] | None = await pubsub.get_message(timeout=READ_TIMEOUT)
            if msg is None:
                # A stalled node keeps its socket open and says nothing: ask it.
                now = loop.time()
                if probed is None:
                    if now - heard >= PROBE_IDLE:
                        self._outbox.append(("PING", [PROBE]))
                        self._send.set()
                        probed = now
                elif now - probed >= PROBE_TIMEOUT:
                    raise SubscriptionStalled(
                        f"{self.name} was silent for {now - heard:.1f}s and did not answer "
                        f"a PING within {PROBE_TIMEOUT:.0f}s"
                    )
                continue
            heard, probed = loop.time(), None
            kind = msg["type"]
            if kind in ("smessage", "pmessage", "message"):
                batch = [(msg["channel"], msg["data"])]
                # The socket read behind that message usually brought more: take them now.
                buffered = _batch_read.buffered_reader(pubsub)
                control = None
                try:
                    if buffered is not None:
                        control = _batch_read.take_until_control(buffered, batch)
                finally:
                    on_messages(batch)  # what came before an error reply is delivered
                if control is not None:
                    await self._control(control[0].decode(), control[1])
            elif kind != "pong":
                await self._control(kind, msg["channel"])

    async def _control(self, kind: str, channel: bytes) -> None:
        if channel == self.marker:
            if kind in _SUBSCRIBED:
                self.live = True
                self._owner.session_live(self)
                return
            raise TopologyMoved(f"{self.name} stopped serving its slots ({kind} pushed)")
        room = room_from_channel(channel)
        if room is None:
            return
        if kind in _SUBSCRIBED:
            if room in self.rooms:
                await self._owner.room_confirmed(self, room)
        elif kind in _UNSUBSCRIBED:
            asked = room in self._asked_off
            self._asked_off.discard(room)
            self.rooms.discard(room)
            self.catch_up.discard(room)
            self._owner.room_ended(self, room, asked=asked)
