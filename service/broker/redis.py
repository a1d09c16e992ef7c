"""The Redis broker: one `PSUBSCRIBE room:*:logs` per process, one reader task, one Lua publish.

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
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, Final, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..ids import MAX_KEY, format_id, parse_id
from ..settings import Settings
from . import _batch_read
from ._errors import CONNECTION_ERRORS, SubscriptionStalled, explain, never_sent
from ._pool import make_pool
from .base import (
    Broker,
    BrokerEvents,
    BrokerState,
    BrokerUnavailable,
    HistoryEntry,
    PublishOutcomeUnknown,
    Window,
)
from .envelope import ENVELOPE_SECRET_KEY, Envelopes, read_secret
from .keys import PLAIN, KeySpace
from .plain import PlainStore
from .refusal import describe_refusal
from .replicas import Replicas
from .script import (
    PERMISSIONS_SCRIPT,
    PLAIN_SCRIPT,
    PUBLISH_SCRIPT,
    Published,
    store_and_publish,
)
from .sentinel import SentinelLink

log = logging.getLogger("service.broker")

T = TypeVar("T")

READ_TIMEOUT = 1.0  # seconds a pub/sub read waits: a real timeout, never a spinning poll
ATTEMPTS: Final = 3  # tries of one command on connection errors (see `_call`)
# The subscription's liveness probe: after this long without a message, a PING; no answer
# within PROBE_TIMEOUT and the subscription counts as lost (readiness 503, reconnect).
PROBE_IDLE: Final = 5.0
PROBE_TIMEOUT: Final = 3.0
PROBE: Final = "roomlogs-probe"
CLOSE_DRAIN: Final = 2.0  # seconds `close` waits for plain logs being stored
CATCH_UP_PAGE: Final = 500  # logs read at a time when catching a room up


class RedisBroker(Broker):
    # What the Cluster's broker (cluster.py) changes: hash-tagged keys, SPUBLISH in the scripts.
    keyspace: ClassVar[KeySpace] = PLAIN
    publish_script: ClassVar[str] = PUBLISH_SCRIPT
    plain_script: ClassVar[str] = PLAIN_SCRIPT
    permissions_script: ClassVar[str] = PERMISSIONS_SCRIPT
    # Errors after which a plain log's store is retried (the claims make a resend harmless).
    transient_errors: ClassVar[tuple[type[BaseException], ...]] = CONNECTION_ERRORS

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
        self._script = self._client.register_script(self.publish_script)
        self._permissions = self._client.register_script(self.permissions_script)
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

    async def close(self) -> None:
        if self._tasks and not self._tasks[1].done():
            # Plain logs already received are stored before the connection goes.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_DRAIN):
                    await self._plain.drained()
        self._set_state(BrokerState.CLOSED, "closed")
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
                step = f"PSUBSCRIBE {self._keys.pattern}"
                await pubsub.psubscribe(self._keys.pattern)
                failures = 0
                await self._read(pubsub)
            except Exception as exc:  # the reader must outlive anything Redis does to it
                failures += 1
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

    async def _read(self, pubsub: PubSub) -> None:
        on_messages = self.events.on_messages
        # Not `while True`: redis-py can swallow a cancellation that lands inside
        # `get_message()` (seen right after start-up), so the reader also ends on the state
        # `close()` sets, within one READ_TIMEOUT.
        loop = asyncio.get_running_loop()
        heard = loop.time()  # when the subscription last said anything
        probed: float | None = None  # when the unanswered probe was sent
        while self.state is not BrokerState.CLOSED:
            msg: dict[str, Any] | None = await pubsub.get_message(timeout=READ_TIMEOUT)
            if msg is None:
                # A stalled or demoted Redis keeps the socket open and says nothing: ask it.
                now = loop.time()
                if probed is None:
                    if now - heard >= PROBE_IDLE:
                        await pubsub.ping(PROBE)
                        probed = now
                elif now - probed >= PROBE_TIMEOUT:
                    raise SubscriptionStalled(
                        f"the subscription was silent for {now - heard:.1f}s and did not "
                        f"answer a PING within {PROBE_TIMEOUT:.0f}s"
                    )
                continue
            heard, probed = loop.time(), None
            kind = msg["type"]
            if kind == "pmessage":
                batch = [(msg["channel"], msg["data"])]
                # The socket read behind that message usually brought more: take them now.
                reader = _batch_read.buffered_reader(pubsub)
                try:
                    subscribed = reader is not None and _batch_read.take_buffered(reader, batch)
                finally:
                    on_messages(batch)  # what came before an error reply is delivered
                if subscribed:
                    await self._subscribed(pubsub)
            elif kind == "psubscribe":
                await self._subscribed(pubsub)

    async def _read_secret(self) -> None:
        secret = await read_secret(self._client)
        if self.envelopes is None:
            self.envelopes = Envelopes(secret)
        elif self.envelopes.adopt(secret):
            log.warning(
                "the envelope secret changed (Redis lost its key?): the old one is kept too"
            )

    def _secret(self) -> bytes:
        if self.envelopes is None:
            raise BrokerUnavailable("not connected to redis yet")
        return self.envelopes.secret

    def store_plain(self, room: str, channel: bytes, payload: bytes, log: bytes) -> None:
        self._plain.add(room, channel, payload, log)

    async def plain_drained(self) -> None:
        """Until the plain logs received so far are stored (tests, and `close`)."""
        await self._plain.drained()

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

    # -- commands ------------------------------------------------------------------------

    async def _query(self, call: Callable[[], Awaitable[T]]) -> T:
        return await self._call(call, resend_safe=True, writes=False)

    async def _call(
        self,
        call: Callable[[], Awaitable[T]],
        *,
        resend_safe: bool,
        writes: bool = True,
        room: str | None = None,
    ) -> T:
        """`call`, tried up to ATTEMPTS times on a connection error or timeout: always when it
        never reached Redis, otherwise only when `resend_safe` (a read, an idempotent publish).
        Raises `BrokerUnavailable` when it surely changed nothing, `PublishOutcomeUnknown`
        when an attempt of a write may have run."""
        maybe_ran = False
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return await call()
            except (RedisConnectionError, RedisTimeoutError) as exc:
                sent = not never_sent(exc)
                maybe_ran = maybe_ran or sent
                # A timeout already took `socket_timeout`: no second wait on a stalled Redis.
                timed_out = isinstance(exc, RedisTimeoutError)
                if attempt == ATTEMPTS or timed_out or (sent and not resend_safe):
                    reason = f"redis: {explain(exc, client_cert=self._client_cert)}"
                    if writes and maybe_ran:
                        raise PublishOutcomeUnknown(reason) from exc
                    raise BrokerUnavailable(reason) from exc
            except RedisError as exc:  # an error reply: Redis refused the command
                reason, first_write_refused = await describe_refusal(
                    exc, room, self._keys, self._permissions, client_cert=self._client_cert
                )
                if writes and "@user_script" in str(exc) and not first_write_refused:
                    # Refused inside a script, which Redis does not roll back: what ran
                    # before the refused command (an XADD, say) is stored.
                    raise PublishOutcomeUnknown(f"{reason}; the script stopped part-way") from exc
                raise BrokerUnavailable(reason) from exc
            await asyncio.sleep(self._command_backoff.compute(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    async def publish(self, room: str, logs: Sequence[bytes]) -> list[str]:
        # Without a key, a resend after a lost answer would store twice.
        return (await self._store(room, logs, resend_safe=False)).ids

    async def publish_once(
        self, room: str, logs: Sequence[bytes], key: str, seen: str
    ) -> Published:
        # The nonce is the same in every attempt: a resend replays, stores nothing.
        return await self._store(
            room, logs, resend_safe=True, key=key, seen=seen, nonce=uuid.uuid4().hex
        )

    async def _store(
        self,
        room: str,
        logs: Sequence[bytes],
        *,
        resend_safe: bool,
        key: str | None = None,
        seen: str = "",
        nonce: str | None = None,
    ) -> Published:
        secret = self._secret()

        async def run(script: AsyncScript) -> Published:
            return await store_and_publish(
                script,
                room,
                logs,
                self._history_max,
                self._history_ttl,
                secret=secret,
                keys=self._keys,
                key=key,
                key_ttl=self._key_ttl,
                seen=seen,
                nonce=nonce,
            )

        history = self._keys.history(room)
        return await self._call(
            lambda: (
                self._replicas.store(self._client, run, history)
                if self._replicas
                else run(self._script)
            ),
            resend_safe=resend_safe,
            room=room,
        )

    async def history(self, room: str, after: str | None, limit: int) -> list[HistoryEntry]:
        if after is not None and parse_id(after) == MAX_KEY:
            return []  # nothing can follow the largest id, and Redis refuses "(max"
        start = f"({after}" if after else "-"
        key = self._keys.history(room)
        rows = await self._query(lambda: self._client.xrange(key, start, "+", count=limit))
        return _entries(rows or [])

    async def last(self, room: str, count: int, *, before: str | None = None) -> list[HistoryEntry]:
        if count <= 0 or (before is not None and parse_id(before) == (0, 0)):
            return []  # nothing precedes the smallest id, and Redis refuses "(0-0"
        key = self._keys.history(room)
        end = f"({before}" if before else "+"
        rows = await self._query(lambda: self._client.xrevrange(key, end, "-", count=count))
        return _entries((rows or [])[::-1])

    async def window(self, room: str) -> Window:
        key = self._keys.history(room)

        async def info_or_none() -> dict[str, Any] | None:
            # A room without history makes XINFO answer an error. Taken as a value, not
            # raised: a raised one's traceback held the resuming streams' request frames.
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.xinfo_stream(key)
                [info] = await pipe.execute(raise_on_error=False)
            if isinstance(info, aioredis.ResponseError):  # no such key
                return None
            if isinstance(info, Exception):
                raise info
            return dict(info)

        info = await self._query(info_or_none)
        if info is None:
            return Window(None, None, trimmed=False)
        first, last = info.get("first-entry"), info.get("last-entry")
        # Trimming (MAXLEN ~) is not XDEL: max-deleted-entry-id stays 0-0, so compare counts.
        trimmed = int(info.get("entries-added", 0)) > int(info.get("length", 0))
        return Window(
            first[0].decode() if first else None,
            last[0].decode() if last else None,
            trimmed=trimmed,
        )

    async def room_exists(self, room: str) -> bool:
        key = self._keys.room(room)
        return bool(await self._query(lambda: self._client.exists(key)))


def _entries(rows: Sequence[tuple[Any, Any]]) -> list[HistoryEntry]:
    out: list[HistoryEntry] = []
    for raw_id, fields in rows:
        data = fields.get(b"log")
        stream_id = raw_id.decode("ascii")
        if data is not None and parse_id(stream_id) is not None:
            out.append((stream_id, data))
    return out
