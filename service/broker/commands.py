"""What the Redis brokers ask Redis command by command: the publishes, with the policy of
when a failed command is sent again and what its failure tells the caller, and the history reads.

`RedisBroker` (redis.py) adds the client these go through and the subscription; the Cluster's
broker (cluster.py) other keys and a client per primary.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, Final, TypeVar

import redis.asyncio as aioredis
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..ids import MAX_KEY, parse_id
from ._errors import explain, never_sent
from .base import Broker, BrokerUnavailable, HistoryEntry, PublishOutcomeUnknown, Window
from .keys import KeySpace
from .refusal import describe_refusal
from .replicas import Replicas
from .resume_script import parse_resume
from .script import PUBLISH_SCRIPT, Published, ScriptRunner, store_and_publish

T = TypeVar("T")

ATTEMPTS: Final = 3  # tries of one command on connection errors (see `_call`)


class RedisCommands(Broker):
    publish_script: ClassVar[str] = PUBLISH_SCRIPT
    # Set up by the subclass (redis.py's `__init__`).
    _client: aioredis.Redis
    _keys: KeySpace
    _script: ScriptRunner
    _permissions: AsyncScript
    _resume: ScriptRunner
    _replicas: Replicas | None
    _history_max: int
    _history_ttl: int
    _key_ttl: int
    _command_backoff: ExponentialWithJitterBackoff
    _client_cert: bool

    def _secret(self) -> bytes:
        if self.envelopes is None:
            raise BrokerUnavailable("not connected to redis yet")
        return self.envelopes.secret

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

    def _replica_client(self, room: str) -> aioredis.Redis:
        """PUBLISH_REPLICAS: the client whose pooled connection runs `room`'s script and then
        WAIT (the Cluster's broker: the one of the primary serving the room's slot)."""
        return self._client

    async def publish(self, room: str, logs: Sequence[bytes]) -> list[str]:
        # Without a key, a resend after a lost answer would store twice.
        return (await self._store(room, logs, resend_safe=False)).ids

    async def publish_once(
        self, room: str, logs: Sequence[bytes], key: str, seen: str
    ) -> Published:
        # The nonce is the same in every attempt: a resend replays, stores nothing.
        return await self._store(
            room, logs, resend_safe=True, key=key, seen=seen, nonce=os.urandom(16).hex()
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

        async def run(script: ScriptRunner) -> Published:
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
                self._replicas.store(self._replica_client(room), self.publish_script, run, history)
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

    async def resume(self, room: str, after: str, limit: int) -> tuple[Window, list[HistoryEntry]]:
        if parse_id(after) == MAX_KEY:
            return await super().resume(room, after, limit)  # Redis refuses "(max"
        keys, args = [self._keys.history(room)], [f"({after}", str(limit)]
        reply = await self._query(lambda: self._resume(keys=keys, args=args))
        return parse_resume(reply)

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
