"""The publishers' helper: `await publisher.emit(room, message, ...)`.

The replacement for the original NestJS `RoomsService.emitLog()`. Over Redis it runs the
service's own publish script (stored in history *and* live, atomically), so logs published by a
backend are replayable; over HTTP it posts to `POST /api/v1/rooms/{room}/logs` with an
`Idempotency-Key`, so an answer lost on the way back (a load balancer's 502 while a gateway
restarts) is retried without storing the logs twice.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import orjson
import redis.asyncio as aioredis
from redis.backoff import ExponentialWithJitterBackoff

from .broker.envelope import read_secret
from .broker.script import PUBLISH_SCRIPT, store_and_publish
from .logs import normalize
from .publisher_batches import MAX_BATCH, Batches
from .rooms import is_valid_room_id

# Answers after which a retry with the same key is safe and may succeed: the load balancer
# found no gateway (502/504), or the gateway could not store the logs now (503).
_RETRY_STATUSES = frozenset({502, 503, 504})


class PublishError(Exception):
    """The log was not stored, or it is not known whether it was; `str()` says why."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        # The Idempotency-Key of the attempts when the outcome is unknown: the history (or a
        # raw POST of the same body with this key) tells whether the logs were stored.
        self.key = key


def _refusal(status: int, body: bytes) -> str:
    """`403 room_not_allowed: …` from the service's JSON error, or the start of anything else."""
    try:
        error = orjson.loads(body)
        return f"{status} {error['error']}: {error['detail']}"
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return f"{status} {body[:200].decode('utf-8', 'replace')}"


class Publisher:
    def __init__(
        self,
        *,
        redis_url: str | None = None,
        url: str | None = None,
        token: str | None = None,
        history_max: int = 1000,
        history_ttl: int = 86400,
        max_message_bytes: int = 65536,
        attempts: int = 5,
        redis_options: Mapping[str, Any] | None = None,
        max_batch: int = MAX_BATCH,
        max_pending: int = 10_000,
        linger: float = 0.0,
    ) -> None:
        """`redis_options`: more of redis-py's connection arguments, e.g. a `Settings`'
        `redis_options` (the REDIS_TLS_* files).

        What is emitted to a room while its previous send is on the way goes together in its
        next one, up to `max_batch` logs (publisher_batches.py); at most `max_pending` logs
        wait or are on the way, then `emit` waits. `linger` (seconds, 0 by default) holds each
        send back that long to gather more."""
        if (redis_url is None) == (url is None):
            raise ValueError("give exactly one of redis_url= or url=")
        self._redis = (
            aioredis.Redis.from_url(redis_url, **(redis_options or {})) if redis_url else None
        )
        self._script = self._redis.register_script(PUBLISH_SCRIPT) if self._redis else None
        self._secret: bytes | None = None  # the gateways' envelope secret, read from Redis
        self._url = url.rstrip("/") if url else None
        self._token = token
        self._http: aiohttp.ClientSession | None = None
        self._history_max = history_max
        self._history_ttl = history_ttl
        self._max_bytes = max_message_bytes
        self._attempts = max(1, attempts)
        self._backoff = ExponentialWithJitterBackoff(cap=2.0, base=0.1)
        self._batches = Batches(
            self._send, max_batch=max_batch, max_pending=max_pending, linger=linger
        )

    @property
    def pending(self) -> int:
        """Logs emitted and not yet answered (queued or on the way), at most `max_pending`."""
        return self._batches.pending

    async def __aenter__(self) -> Publisher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Send what is still queued, then close the connections."""
        await self._batches.drain()
        if self._redis is not None:
            await self._redis.aclose()
        if self._http is not None:
            await self._http.close()

    async def emit(
        self,
        room: str,
        message: str,
        *,
        agent_type: str = "system",
        level: str = "info",
        metadata: Mapping[str, Any] | None = None,
        **extra: Any,
    ) -> str:
        """Publish one log; returns its stream id."""
        log = {
            **extra,
            "agentType": agent_type,
            "level": level,
            "message": message,
            "metadata": dict(metadata or {}),
        }
        return (await self.emit_many(room, [log]))[0]

    async def emit_many(self, room: str, logs: Sequence[Mapping[str, Any]]) -> list[str]:
        """Publish `logs` together, in order, after what was emitted to `room` before;
        returns their stream ids."""
        if not is_valid_room_id(room):
            raise PublishError(f"invalid room id {room!r}")
        encoded = []
        for log in logs:
            data = orjson.dumps(normalize(dict(log)))
            if len(data) > self._max_bytes:
                raise PublishError(f"a log is over {self._max_bytes} bytes")
            encoded.append(data)
        if not encoded:
            return []
        return await self._batches.put(room, encoded)

    async def _send(self, room: str, encoded: list[bytes]) -> list[str]:
        """One send: the publish script over Redis, or a POST with its Idempotency-Key."""
        if self._redis is not None and self._script is not None:
            try:
                if self._secret is None:
                    self._secret = await read_secret(self._redis)
                published = await store_and_publish(
                    self._script,
                    room,
                    encoded,
                    self._history_max,
                    self._history_ttl,
                    secret=self._secret,
                )
                return published.ids
            except aioredis.RedisError as exc:
                self._secret = None  # a Redis that restarted may have a new one
                raise PublishError(f"redis: {exc}") from exc
        return await self._post(room, b"[" + b",".join(encoded) + b"]")

    async def _post(self, room: str, body: bytes) -> list[str]:
        if self._http is None:
            headers = {"Content-Type": "application/json"}
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            self._http = aiohttp.ClientSession(headers=headers)
        key = uuid.uuid4().hex
        url = f"{self._url}/api/v1/rooms/{room}/logs"
        last = ""
        for attempt in range(1, self._attempts + 1):
            try:
                async with self._http.post(url, data=body, headers={"Idempotency-Key": key}) as r:
                    if r.status == 202:
                        ids: list[str] = (await r.json(content_type=None))["ids"]
                        return ids
                    last = _refusal(r.status, await r.read())
                    if r.status not in _RETRY_STATUSES:
                        raise PublishError(last)
            except aiohttp.ClientError as exc:
                last = f"http: {exc}"
            if attempt < self._attempts:
                await asyncio.sleep(self._backoff.compute(attempt))
        raise PublishError(
            f"not known to be stored after {self._attempts} attempts with one "
            f"Idempotency-Key ({last})",
            key,
        )
