"""The Redis broker: one subscription connection per process, one reader task, one Lua publish.

`SUBSCRIBE_MODE=pattern` holds one `PSUBSCRIBE room:*:logs`; `rooms` holds `SUBSCRIBE room:R:logs`
for the rooms with a local stream (`interest.py` decides what to send; docs/subscriptions.md).

The reader owns reconnection: on any connection error it marks itself down (readiness turns
503), waits an exponential backoff with jitter (redis-py's own), and subscribes again on a fresh
connection. A new subscribe confirmation after an outage means messages may have been missed, so
every room with local streams is read from history after the last id it delivered. What arrives
goes to the delivery step undecoded, a socket read's worth at a time (`_batch_read.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection, Sequence
from typing import Any, ClassVar, Final

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ResponseError

from ..ids import format_id
from ..settings import Settings
from . import _batch_read, _per_room
from ._errors import CONNECTION_ERRORS, SubscriptionStalled, explain
from ._pool import make_pool
from .base import (
    BrokerEvents,
    BrokerState,
    BrokerUnavailable,
)
from .coalesce import script_runner
from .commands import RedisCommands
from .envelope import ENVELOPE_SECRET_KEY, Envelopes, read_secret
from .interest import Interest
from .keeper import PlainKeeper
from .keys import PLAIN, KeySpace, room_from_channel
from .plain import PlainStore
from .replicas import Replicas
from .resume_script import BATCH_RESUME_SCRIPT, RESUME_SCRIPT, RESUMES_PER_CALL
from .script import (
    BATCH_PUBLISH_SCRIPT,
    PERMISSIONS_SCRIPT,
    PLAIN_SCRIPT,
)
from .sentinel import SentinelLink

log = logging.getLogger("service.broker")

READ_TIMEOUT = 1.0  # seconds a pub/sub read waits: a real timeout, never a spinning poll
# The subscription's liveness probe: after this long without a message, a PING; no answer
# within PROBE_TIMEOUT and the subscription counts as lost (readiness 503, reconnect).
PROBE_IDLE: Final = 5.0
PROBE_TIMEOUT: Final = 3.0
PROBE: Final = "roomlogs-probe"
CLOSE_DRAIN: Final = 2.0  # seconds `close` waits for plain logs being stored
CATCH_UP_PAGE: Final = 500  # logs read at a time when catching a room up
_CONFIRMATIONS: Final = frozenset(("psubscribe", "subscribe", "unsubscribe"))
# A reply that changes what the reader does next: (kind, channel or PING message), the kind
# as Redis spells it (b"subscribe", b"unsubscribe", b"psubscribe", b"pong").
_Control = tuple[bytes, bytes]


class RedisBroker(RedisCommands):
    # What the Cluster's broker (cluster.py) changes: hash-tagged keys, SPUBLISH in the scripts.
    keyspace: ClassVar[KeySpace] = PLAIN
    plain_script: ClassVar[str] = PLAIN_SCRIPT
    permissions_script: ClassVar[str] = PERMISSIONS_SCRIPT
    # Errors after which a plain log's store is retried (the claims make a resend harmless).
    transient_errors: ClassVar[tuple[type[BaseException], ...]] = CONNECTION_ERRORS
    coalesce: ClassVar[bool] = True  # a loop turn's publishes in one script call (coalesce.py)

    def __init__(self, settings: Settings, events: BrokerEvents) -> None:
        super().__init__(events)
        self._history_max = settings.history_max
        self._history_ttl = settings.history_ttl
        self._key_ttl = settings.idempotency_ttl
        self._keys = self.keyspace
        self._backoff = ExponentialWithJitterBackoff(cap=5.0, base=0.05)
        self._command_backoff = ExponentialWithJitterBackoff(cap=0.5, base=0.05)
        self._replicas = Replicas.of(settings)  # PUBLISH_REPLICAS: WAIT after the script
        self._client_cert = settings.redis_tls_cert_file is not None
        self._sentinel: SentinelLink | None = None  # set by `_make_client` with Sentinel
        self._client: aioredis.Redis = self._make_client(settings)
        self._script = script_runner(
            self._client, self.publish_script, BATCH_PUBLISH_SCRIPT if self.coalesce else None
        )
        self._permissions = self._client.register_script(self.permissions_script)
        self._resume = script_runner(
            self._client,
            RESUME_SCRIPT,
            BATCH_RESUME_SCRIPT if self.coalesce else None,
            max_calls=RESUMES_PER_CALL,
            # A storm's resumes come a few per loop turn: one batch on the way at a time
            # makes the next one larger (3,256 round trips for 4,931 resumes, one a turn).
            in_flight=1,
        )
        self._plain = PlainStore(
            self._client,
            self._keys,
            self._history_max,
            self._history_ttl,
            lambda: self.envelopes,
            events,
            script=self.plain_script,
            transient=self.transient_errors,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._lost_at_ms: int | None = None
        # SUBSCRIBE_MODE=rooms: the rooms this process holds, the event that wakes the
        # connection's writer when they change, and the plain PUBLISH keeper.
        # (A Cluster holds its per-room subscriptions itself: cluster.py.)
        self._per_room = settings.subscribe_mode == "rooms" and settings.topology != "cluster"
        self.one_subscription = (
            settings.subscribe_mode == "pattern" and settings.topology != "cluster"
        )
        self._secret_read = asyncio.Event()
        self._changed = asyncio.Event()
        self._interest = Interest(settings.unsubscribe_linger, self._changed.set)
        self._keeper: PlainKeeper | None = None
        if self._per_room and settings.plain_keepers:
            self._keeper = PlainKeeper(
                self._client,
                self._keys,
                PlainStore(
                    self._client,
                    self._keys,
                    self._history_max,
                    self._history_ttl,
                    lambda: self.envelopes,
                    events,
                ),
                self._keep,
                self._secret_read.wait,
                settings.plain_keepers,
            )
        self._sink = self._plain  # where `store_plain` queues (the keeper's store meanwhile)

    def _make_client(self, settings: Settings) -> aioredis.Redis:
        """The client every command goes through (and, here, the subscription's pool): one
        server's pool, or (REDIS_SENTINELS) the primary's, followed by `_sentinel`."""
        self._pool, self._sentinel = make_pool(settings)
        return aioredis.Redis(connection_pool=self._pool)

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(), name="roomlogs-redis-reader"),
            asyncio.create_task(self._plain.run(), name="roomlogs-plain-writer"),
        ]
        if self._sentinel is not None:
            # Follows failovers: closing the old primary's connections (the subscription's
            # too) makes the reader resubscribe on the new one and catch up.
            watch = self._sentinel.watch()
            self._tasks.append(asyncio.create_task(watch, name="roomlogs-sentinel-watch"))
        if self._keeper is not None:
            self._tasks.append(asyncio.create_task(self._keeper.run(), name="roomlogs-keeper"))

    async def close(self) -> None:
        if self._tasks and not self._tasks[1].done():
            # Plain logs already received are stored before the connection goes.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_DRAIN):
                    await self.plain_drained()
        self._set_state(BrokerState.CLOSED, "closed")
        self._interest.clear()
        if self._keeper is not None:
            self._keeper.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._client.aclose()
        await self._pool.aclose()
        if self._sentinel is not None:
            await self._sentinel.aclose()

    # -- the reader ---------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while self.state is not BrokerState.CLOSED:
            pubsub = self._client.pubsub()
            step = f"SET NX/GET {ENVELOPE_SECRET_KEY}"  # what a refusal names
            try:
                await self._read_secret()  # before anything is received or published
                if self._per_room:
                    step = "SUBSCRIBE"
                    await pubsub.connect()  # type: ignore[no-untyped-call]
                    failures = 0
                    await self._read_rooms(pubsub)
                else:
                    step = f"PSUBSCRIBE {self._keys.pattern}"
                    await pubsub.psubscribe(self._keys.pattern)
                    failures = 0
                    await self._read(pubsub)
            except Exception as exc:  # the reader must outlive anything Redis does to it
                failures += 1
                if self._per_room:
                    if self._interest.confirmed and self._lost_at_ms is None:
                        # Rooms were live (perhaps not yet all): streams may have replayed.
                        self._lost_at_ms = time.time_ns() // 1_000_000
                    self._interest.lost()  # all subscribed again on the next connection
                why = explain(exc, client_cert=self._client_cert)
                if isinstance(exc, SubscriptionStalled):
                    reason = "redis stalled: no answer to the liveness probe"
                elif isinstance(exc, ResponseError):
                    # An error reply (NOPERM, a read-only replica…): the configuration, most
                    # likely, and retried all the same since an operator may fix it live.
                    reason = f"redis refused {step}: {why}"
                elif isinstance(exc, (*CONNECTION_ERRORS, BrokerUnavailable)):
                    reason = f"redis unreachable: {why}"
                else:
                    log.exception("redis reader failed unexpectedly")
                    reason = f"redis reader failed: {type(exc).__name__}"
                self._went_down(reason)
                delay = self._backoff.compute(failures)
                log.warning(
                    "redis subscription lost (%s); retrying in %.2fs (attempt %d)",
                    reason,
                    delay,
                    failures,
                )
                await asyncio.sleep(delay)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _read(self, pubsub: PubSub, link: _per_room.Link | None = None) -> None:
        on_messages = self.events.on_messages
        # Not `while True`: redis-py can swallow a cancellation that lands inside
        # `get_message()` (seen right after start-up), so the reader also ends on the state
        # `close()` sets, within one READ_TIMEOUT.
        loop = asyncio.get_running_loop()
        heard = loop.time()  # when the subscription last said anything
        probed: float | None = None  # when the unanswered probe was sent
        while self.state is not BrokerState.CLOSED:
            if link is not None and link.writer is not None and link.writer.done():
                link.writer.result()  # the writer failed: this connection is done
            msg: dict[str, Any] | None = await pubsub.get_message(timeout=READ_TIMEOUT)
            if msg is None:
                # A stalled or demoted Redis keeps the socket open and says nothing: ask it.
                now = loop.time()
                if probed is None:
                    if now - heard >= PROBE_IDLE:
                        await _per_room.send(pubsub, "PING", PROBE)
                        probed = now
                elif now - probed >= PROBE_TIMEOUT:
                    raise SubscriptionStalled(
                        f"the subscription was silent for {now - heard:.1f}s and did not "
                        f"answer a PING within {PROBE_TIMEOUT:.0f}s"
                    )
                continue
            heard, probed = loop.time(), None
            kind = msg["type"]
            batch: list[tuple[bytes, bytes]] = []
            control: _Control | None = None
            if kind == "pmessage" or kind == "message":
                batch.append((msg["channel"], msg["data"]))
            elif kind in _CONFIRMATIONS:
                control = (kind.encode(), msg["channel"])
            elif kind == "pong":
                control = (b"pong", msg["data"])
            else:
                continue
            # The socket read behind that reply usually brought more: take them now, and
            # handle each confirmation in its turn (before anything that came after it).
            reader = _batch_read.buffered_reader(pubsub)
            while True:
                if control is None and reader is not None:
                    try:
                        reply = _batch_read.take_until_control(reader, batch, pongs=True)
                        control = (reply[0], reply[1]) if reply is not None else None
                    finally:
                        if batch:
                            on_messages(batch)  # what came before an error is delivered
                elif batch:
                    on_messages(batch)
                batch = []
                if control is None:
                    break
                await self._on_control(pubsub, control, link)
                control = None
                if reader is None:
                    break
                reader = _batch_read.buffered_reader(pubsub)

    async def _on_control(
        self, pubsub: PubSub, control: _Control, link: _per_room.Link | None
    ) -> None:
        """A confirmation, or a PING's answer: what it changes for the reader."""
        kind, name = control
        if kind == b"psubscribe":
            await self._subscribed(pubsub)
            return
        if link is None:
            return  # pattern mode: the probe's answer
        if kind == b"pong":
            # The marker: every first SUBSCRIBE of this connection is confirmed.
            if name == _per_room.LIVE_MARKER:
                if self._keeper is not None and not self._keeper.settled.is_set():
                    with contextlib.suppress(TimeoutError):  # at start-up only
                        async with asyncio.timeout(_per_room.KEEPER_WAIT):
                            await self._keeper.settled.wait()
                await self._subscribed(pubsub)
            return
        room = room_from_channel(name)
        if room is None:
            return
        if kind == b"subscribe":
            self._interest.subscribed((room,))
            since = link.catch_up.pop(room, None)
            if since is not None and room in self.rooms:
                await self._catch_up_room(room, f"{max(since - 1000, 0)}-0")
        elif kind == b"unsubscribe":
            sent = link.unsubscribed_at.pop(room, None)
            self._interest.unsubscribed((room,))
            if room in self._interest.wanted:
                # Reopened while the UNSUBSCRIBE was on its way: subscribed again, and what
                # was published in between is read from history once it is.
                link.catch_up[room] = sent if sent is not None else time.time_ns() // 1_000_000

    async def _read_rooms(self, pubsub: PubSub) -> None:
        """SUBSCRIBE_MODE=rooms on one connection: a writer task sends what `Interest` asks
        for, as soon as it asks (`subscribe` is sync: it sets the event the writer waits on),
        while this task reads, as in pattern mode."""
        link = _per_room.Link()
        link.writer = writer = asyncio.create_task(
            _per_room.write(pubsub, self._interest, self._changed, self._keys.channel, link),
            name="roomlogs-redis-subscriber",
        )
        try:
            await self._read(pubsub, link)
        except Exception:
            failed = writer.exception() if writer.done() and not writer.cancelled() else None
            if failed is not None:
                raise failed from None
            raise
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    def subscribe(self, rooms: Collection[str]) -> None:
        super().subscribe(rooms)
        if self._per_room:
            self._interest.open(rooms)

    def unsubscribe(self, rooms: Collection[str]) -> None:
        super().unsubscribe(rooms)
        if self._per_room:
            self._interest.close(rooms)

    async def listening(self, rooms: Collection[str]) -> None:
        if self._per_room:
            await _per_room.listening(self._interest, rooms)

    @property
    def subscribed_rooms(self) -> int:
        """Rooms Redis confirmed this process' SUBSCRIBE of (SUBSCRIBE_MODE=rooms; else 0)."""
        return len(self._interest.confirmed)

    def _keep(self, batch: Sequence[tuple[bytes, bytes]]) -> None:
        """The keeper's plain PUBLISH logs: validated by the delivery step like any, stored by
        the keeper's own store (its own count of copies: see keeper.py)."""
        assert self._keeper is not None
        self._sink = self._keeper.store
        try:
            self.events.on_messages(batch)
        finally:
            self._sink = self._plain

    async def _read_secret(self) -> None:
        secret = await read_secret(self._client)
        if self.envelopes is None:
            self.envelopes = Envelopes(secret)
        elif self.envelopes.adopt(secret):
            log.warning(
                "the envelope secret changed (Redis lost its key?): the old one is kept too"
            )
        self._secret_read.set()

    def store_plain(self, room: str, channel: bytes, payload: bytes, log: bytes) -> None:
        self._sink.add(room, channel, payload, log)

    async def plain_drained(self) -> None:
        """Until the plain logs received so far are stored (tests, and `close`)."""
        await self._plain.drained()
        if self._keeper is not None:
            await self._keeper.store.drained()

    def _went_down(self, reason: str) -> None:
        if self.state is BrokerState.LIVE:
            self._lost_at_ms = time.time_ns() // 1_000_000
        self._set_state(BrokerState.DOWN, reason)

    async def _subscribed(self, pubsub: PubSub) -> None:
        _batch_read.announce(pubsub)
        recovering = self._lost_at_ms is not None
        if recovering:
            await self._catch_up()
            self._lost_at_ms = None
        self._set_state(BrokerState.LIVE, "live", recovered=recovering)
        log.info("redis subscription live%s", " (recovered)" if recovering else "")

    async def _catch_up(self) -> None:
        """Deliver what rooms with local streams missed while the subscription was down: every
        retained log after each room's position, read a page at a time."""
        assert self._lost_at_ms is not None
        fallback = f"{max(self._lost_at_ms - 1000, 0)}-0"  # a room that never began (a race)
        for room in list(self.rooms):
            await self._catch_up_room(room, fallback)

    async def _catch_up_room(self, room: str, fallback: str) -> None:
        """One room's catch-up: after its position, or `fallback` when it has none."""
        last = self.events.position(room)
        after = format_id(last) if last is not None else fallback
        if last is not None:
            window = await self.window(room)
            if not window.covers(last):
                self.events.on_gap(room, after, window.oldest)
        caught = 0
        while True:
            entries = await self.history(room, after, CATCH_UP_PAGE)
            for stream_id, data in entries:
                self.events.on_entry(room, stream_id, data)
            caught += len(entries)
            if len(entries) < CATCH_UP_PAGE:
                break
            after = entries[-1][0]
        if caught:
            log.info("caught up room=%s with %d logs", room, caught)
