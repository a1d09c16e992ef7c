"""The Redis broker: one `PSUBSCRIBE room:*:logs` per process, one reader task, one Lua publish.

The reader owns reconnection: on any connection error it marks itself down (readiness turns
503), waits an exponential backoff with jitter (redis-py's own), and subscribes again on a fresh
connection. A new subscribe confirmation after an outage means messages may have been missed, so
every room with local subscribers is read from history after the last id it delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from ..frames import envelope
from ..hub import Hub
from ..ids import MAX_KEY, format_id, parse_id
from ..metrics import Metrics
from ..rooms import CHANNEL_PATTERN, channel, history_key, publish_key, room_key
from ..settings import Settings
from .base import (
    Broker,
    BrokerState,
    BrokerUnavailable,
    HistoryEntry,
    KeyReused,
    Published,
    Window,
)

log = logging.getLogger("service.broker")

try:
    # What redis-py's hiredis parser has hiredis return when no whole reply is buffered (a
    # private name, the same from redis-py 5 to 8). Without it the reader takes one
    # `get_message()` per message, which is correct, only slower.
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH_DATA
except ImportError:  # pragma: no cover - another redis-py layout
    _NOT_ENOUGH_DATA = None

# KEYS[1] history stream, KEYS[2] live channel; ARGV[1] MAXLEN, ARGV[2] TTL, ARGV[3..] logs.
# XADD + PUBLISH (the payload carries the stream id) + EXPIRE, atomically: every log that is
# live is also replayable, and channel order is id order.
# With KEYS[3], an idempotency key: ARGV[3] is its TTL, ARGV[4] the request's fingerprint,
# ARGV[5] a nonce of this call, and the logs start at ARGV[6]. A key seen before stores nothing
# and returns its ids, led by "replayed" unless the nonce is this call's (redis-py resending
# the same call after a lost reply: the logs were stored by this very publish); a fingerprint
# that differs is the error IDEMPOTENCY_KEY_REUSED. Otherwise the key keeps
# "<fingerprint> <nonce> <id>,<id>..." for its TTL.
PUBLISH_SCRIPT = """
local first = 3
if KEYS[3] then
  first = 6
  local prior = redis.call('GET', KEYS[3])
  if prior then
    local seen, nonce, stored = string.match(prior, '^(%S+) (%S+) (%S+)$')
    if seen ~= ARGV[4] then
      return redis.error_reply('IDEMPOTENCY_KEY_REUSED')
    end
    local ids = {}
    if nonce ~= ARGV[5] then ids[1] = 'replayed' end
    for id in string.gmatch(stored, '[^,]+') do ids[#ids + 1] = id end
    return ids
  end
end
local ids = {}
for i = first, #ARGV do
  local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'log', ARGV[i])
  redis.call('PUBLISH', KEYS[2], '{"id":"' .. id .. '",' .. string.sub(ARGV[i], 2))
  ids[#ids + 1] = id
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
if KEYS[3] then
  local value = ARGV[4] .. ' ' .. ARGV[5] .. ' ' .. table.concat(ids, ',')
  redis.call('SET', KEYS[3], value, 'EX', ARGV[3])
end
return ids
"""
_REUSED = "IDEMPOTENCY_KEY_REUSED"


async def store_and_publish(
    script: AsyncScript,
    room: str,
    logs: Sequence[bytes],
    history_max: int,
    history_ttl: int,
    *,
    key: str | None = None,
    key_ttl: int = 600,
    seen: str = "",
    nonce: str | None = None,
) -> Published:
    """Run the publish script for one room; the ids of the stored logs, in order.

    With `key`, at most once: see `Broker.publish_once`. The nonce (one per call, so the same
    in redis-py's own resends of it) tells a resend of this call from another request.
    """
    keys = [history_key(room), channel(room)]
    args: list[Any] = [history_max, history_ttl]
    if key is not None:
        keys.append(publish_key(room, key))
        args += [key_ttl, seen, nonce or uuid.uuid4().hex]
    try:
        reply = await script(keys=keys, args=[*args, *logs])
    except aioredis.ResponseError as exc:
        if _REUSED in str(exc):
            raise KeyReused(key) from None
        raise
    replayed = bool(reply) and reply[0] == b"replayed"
    ids = [i.decode("ascii") for i in (reply[1:] if replayed else reply)]
    return Published(ids, replayed)


READ_TIMEOUT = 1.0  # seconds a pub/sub read waits: a real timeout, never a spinning poll
_CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


class RedisBroker(Broker):
    def __init__(self, settings: Settings, hub: Hub, metrics: Metrics) -> None:
        super().__init__(hub, metrics, settings.max_message_bytes)
        assert settings.redis_url is not None
        self._history_max = settings.history_max
        self._history_ttl = settings.history_ttl
        self._key_ttl = settings.idempotency_ttl
        self._backoff = ExponentialWithJitterBackoff(cap=5.0, base=0.05)
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            settings.redis_url,
            # Commands retry briefly; past that a publish answers 503 instead of hanging.
            retry=Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), retries=2),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
            socket_connect_timeout=2.0,
            socket_timeout=5.0,
            health_check_interval=10,
            decode_responses=False,
            protocol=2,
        )
        self._script = self._client.register_script(PUBLISH_SCRIPT)
        self._task: asyncio.Task[None] | None = None
        self._lost_at_ms: int | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="roomlogs-redis-reader")

    async def close(self) -> None:
        self._set_state(BrokerState.CLOSED, "closed")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.aclose()

    # -- the reader ---------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.psubscribe(CHANNEL_PATTERN)
                failures = 0
                await self._read(pubsub)
            except Exception as exc:  # the reader must outlive anything Redis does to it
                failures += 1
                if not isinstance(exc, (*_CONNECTION_ERRORS, BrokerUnavailable)):
                    log.exception("redis reader failed unexpectedly")
                self._went_down(f"redis unreachable: {type(exc).__name__}")
                delay = self._backoff.compute(failures)
                log.warning(
                    "redis subscription lost (%s); retrying in %.2fs (attempt %d)",
                    exc,
                    delay,
                    failures,
                )
                await asyncio.sleep(delay)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _read(self, pubsub: PubSub) -> None:
        deliver = self.deliver
        while True:
            msg: dict[str, Any] | None = await pubsub.get_message(timeout=READ_TIMEOUT)
            if msg is None:
                continue
            kind = msg["type"]
            if kind == "pmessage":
                deliver(msg["channel"], msg["data"])
                # The socket read behind that message usually brought more: take them now.
                reader = _buffered_replies(pubsub)
                if reader is not None and self._deliver_buffered(reader):
                    await self._subscribed()
            elif kind == "psubscribe":
                await self._subscribed()

    def _deliver_buffered(self, reader: hiredis.Reader) -> bool:
        """Deliver the messages already read from the socket, in order, without awaiting.

        `get_message()` costs a retry wrapper, a health check and a timeout context per
        message; under load one socket read holds hundreds of messages. Stops at the first
        incomplete reply (the next `get_message()` reads on), or after a subscribe
        confirmation: True then, and the caller handles it as `get_message()` would have.
        Replies `get_message()` ignores here (the health check's PONG) are skipped; an error
        reply is raised, as redis-py raises it, and the reader reconnects.
        """
        deliver = self._deliver
        count = 0
        try:
            while (reply := reader.gets()) is not _NOT_ENOUGH_DATA:
                if isinstance(reply, Exception):
                    raise reply
                kind = reply[0] if isinstance(reply, list) and reply else None
                if kind == b"pmessage" and len(reply) == 4:
                    count += 1
                    deliver(reply[2], reply[3])
                elif kind == b"psubscribe":
                    return True
            return False
        finally:
            if count:  # counted once per batch: a prometheus-client call is ~1 µs
                self.metrics.broker_messages.inc(count)

    def _went_down(self, reason: str) -> None:
        if self.state is BrokerState.LIVE:
            self._lost_at_ms = time.time_ns() // 1_000_000
        self._set_state(BrokerState.DOWN, reason)

    async def _subscribed(self) -> None:
        recovering = self._lost_at_ms is not None
        if recovering:
            self.metrics.broker_reconnects.inc()
            await self._catch_up()
            self._lost_at_ms = None
        self._set_state(BrokerState.LIVE, "live")
        log.info("redis subscription live%s", " (recovered)" if recovering else "")

    async def _catch_up(self) -> None:
        """Deliver what rooms with local subscribers missed while the subscription was down."""
        assert self._lost_at_ms is not None
        fallback = f"{max(self._lost_at_ms - 1000, 0)}-0"
        for room in self.hub.rooms():
            last = self.hub.last_key(room)
            after = format_id(last) if last is not None else fallback
            entries = await self.history(room, after, self._history_max)
            ch = channel(room).encode()
            for stream_id, data in entries:
                self.deliver(ch, envelope(stream_id, data))
            if entries:
                log.info("caught up room=%s with %d logs", room, len(entries))

    # -- commands ------------------------------------------------------------------------

    async def publish(self, room: str, logs: Sequence[bytes]) -> list[str]:
        try:
            published = await store_and_publish(
                self._script, room, logs, self._history_max, self._history_ttl
            )
        except RedisError as exc:
            raise BrokerUnavailable(f"redis: {type(exc).__name__}") from exc
        return published.ids

    async def publish_once(
        self, room: str, logs: Sequence[bytes], key: str, seen: str
    ) -> Published:
        try:
            return await store_and_publish(
                self._script,
                room,
                logs,
                self._history_max,
                self._history_ttl,
                key=key,
                key_ttl=self._key_ttl,
                seen=seen,
            )
        except RedisError as exc:
            raise BrokerUnavailable(f"redis: {type(exc).__name__}") from exc

    async def history(self, room: str, after: str | None, limit: int) -> list[HistoryEntry]:
        if after is not None and parse_id(after) == MAX_KEY:
            return []  # nothing can follow the largest id, and Redis refuses "(max"
        start = f"({after}" if after else "-"
        try:
            rows = await self._client.xrange(history_key(room), start, "+", count=limit)
            assert rows is not None
        except RedisError as exc:
            raise BrokerUnavailable(f"redis: {type(exc).__name__}") from exc
        return _entries(rows)

    async def last(self, room: str, count: int) -> list[HistoryEntry]:
        if count <= 0:
            return []
        try:
            rows = await self._client.xrevrange(history_key(room), "+", "-", count=count)
            assert rows is not None
        except RedisError as exc:
            raise BrokerUnavailable(f"redis: {type(exc).__name__}") from exc
        rows.reverse()
        return _entries(rows)

    async def window(self, room: str) -> Window:
        try:
            info = await self._client.xinfo_stream(history_key(room))
        except aioredis.ResponseError:  # no such key
            return Window(None, None, trimmed=False)
        except RedisError as exc:
            raise BrokerUnavailable(f"redis: {type(exc).__name__}") from exc
        first, last = info.get("first-entry"), info.get("last-entry")
        # Trimming (MAXLEN ~) is not XDEL: max-deleted-entry-id stays 0-0, so compare counts.
        trimmed = int(info.get("entries-added", 0)) > int(info.get("length", 0))
        return Window(
            first[0].decode() if first else None,
            last[0].decode() if last else None,
            trimmed=trimmed,
        )

    async def room_exists(self, room: str) -> bool:
        try:
            return bool(await self._client.exists(room_key(room)))
        except RedisError as exc:
            raise BrokerUnavailable(f"redis: {type(exc).__name__}") from exc


def _buffered_replies(pubsub: PubSub) -> hiredis.Reader | None:
    """The hiredis reader of the subscription's connection, or None to read through redis-py.

    Private redis-py state (`PubSub.connection._parser._reader`, the same from redis-py 5 to
    8): each `get_message()` reads one socket chunk (up to 64 KiB) into this reader and parses
    one reply off it; the chunk's other whole replies wait there for the next calls. Reading
    them directly is what those calls would do, minus their per-call overhead. It is fetched
    after every `get_message()`, since redis-py makes a new one when it reconnects. Any other
    parser (the pure-Python one) or layout gives None: one `get_message()` per message.
    """
    if _NOT_ENOUGH_DATA is None:
        return None
    parser = getattr(pubsub.connection, "_parser", None)
    reader = getattr(parser, "_reader", None)
    return reader if isinstance(reader, hiredis.Reader) else None


def _entries(rows: Sequence[tuple[Any, Any]]) -> list[HistoryEntry]:
    out: list[HistoryEntry] = []
    for raw_id, fields in rows:
        data = fields.get(b"log")
        stream_id = raw_id.decode("ascii")
        if data is not None and parse_id(stream_id) is not None:
            out.append((stream_id, data))
    return out
