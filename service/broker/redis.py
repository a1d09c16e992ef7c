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
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from ..ids import MAX_KEY, format_id, parse_id
from ..settings import Settings
from . import _batch_read
from .base import Broker, BrokerEvents, BrokerState, BrokerUnavailable, HistoryEntry, Window
from .keys import PLAIN
from .script import PUBLISH_SCRIPT, Published, store_and_publish

log = logging.getLogger("service.broker")

READ_TIMEOUT = 1.0  # seconds a pub/sub read waits: a real timeout, never a spinning poll
_CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


class RedisBroker(Broker):
    def __init__(self, settings: Settings, events: BrokerEvents) -> None:
        super().__init__(events)
        assert settings.redis_url is not None
        self._history_max = settings.history_max
        self._history_ttl = settings.history_ttl
        self._key_ttl = settings.idempotency_ttl
        self._keys = PLAIN
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
        while self.state is not BrokerState.CLOSED:
            pubsub = self._client.pubsub()
            try:
                await pubsub.psubscribe(self._keys.pattern)
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
        on_messages = self.events.on_messages
        # Not `while True`: redis-py can swallow a cancellation that lands inside
        # `get_message()` (seen right after start-up), so the reader also ends on the state
        # `close()` sets, within one READ_TIMEOUT.
        while self.state is not BrokerState.CLOSED:
            msg: dict[str, Any] | None = await pubsub.get_message(timeout=READ_TIMEOUT)
            if msg is None:
                continue
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
        """Deliver what rooms with local streams missed while the subscription was down."""
        assert self._lost_at_ms is not None
        fallback = f"{max(self._lost_at_ms - 1000, 0)}-0"
        for room in list(self.rooms):
            last = self.events.position(room)
            after = format_id(last) if last is not None else fallback
            entries = await self.history(room, after, self._history_max)
            for stream_id, data in entries:
                self.events.on_entry(room, stream_id, data)
            if entries:
                log.info("caught up room=%s with %d logs", room, len(entries))

    # -- commands ------------------------------------------------------------------------

    async def publish(self, room: str, logs: Sequence[bytes]) -> list[str]:
        try:
            published = await store_and_publish(
                self._script, room, logs, self._history_max, self._history_ttl, keys=self._keys
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
                keys=self._keys,
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
            rows = await self._client.xrange(self._keys.history(room), start, "+", count=limit)
            assert rows is not None
        except RedisError as exc:
            raise BrokerUnavailable(f"redis: {type(exc).__name__}") from exc
        return _entries(rows)

    async def last(self, room: str, count: int) -> list[HistoryEntry]:
        if count <= 0:
            return []
        try:
            rows = await self._client.xrevrange(self._keys.history(room), "+", "-", count=count)
            assert rows is not None
        except RedisError as exc:
            raise BrokerUnavailable(f"redis: {type(exc).__name__}") from exc
        rows.reverse()
        return _entries(rows)

    async def window(self, room: str) -> Window:
        try:
            info = await self._client.xinfo_stream(self._keys.history(room))
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
            return bool(await self._client.exists(self._keys.room(room)))
        except RedisError as exc:
            raise BrokerUnavailable(f"redis: {type(exc).__name__}") from exc


def _entries(rows: Sequence[tuple[Any, Any]]) -> list[HistoryEntry]:
    out: list[HistoryEntry] = []
    for raw_id, fields in rows:
        data = fields.get(b"log")
        stream_id = raw_id.decode("ascii")
        if data is not None and parse_id(stream_id) is not None:
            out.append((stream_id, data))
    return out
