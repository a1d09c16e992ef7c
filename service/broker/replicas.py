"""PUBLISH_REPLICAS: a publish is acknowledged only once that many replicas hold it.

`WAIT n timeout` answers how many replicas acknowledged every write made so far *on the
connection it runs on*, so it follows the publish script on the script's own connection (Redis
refuses WAIT inside a script). Fewer than n within the timeout is not a failure to store: the
logs are on the primary, and may or may not survive a failover, so the publisher is told the
outcome is unknown (504) and retries with its Idempotency-Key, which stores them once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from ..settings import Settings
from .base import PublishOutcomeUnknown
from .script import PUBLISH_SCRIPT, Published


@dataclass(frozen=True, slots=True)
class Replicas:
    count: int  # PUBLISH_REPLICAS
    timeout_ms: int  # PUBLISH_REPLICAS_TIMEOUT_MS
    history_ttl: int

    @classmethod
    def of(cls, settings: Settings) -> Replicas | None:
        if not settings.publish_replicas:
            return None
        return cls(
            settings.publish_replicas, settings.publish_replicas_timeout_ms, settings.history_ttl
        )

    async def store(
        self,
        client: aioredis.Redis,
        run: Callable[[AsyncScript], Awaitable[Published]],
        history: str,
    ) -> Published:
        """`run(script)` (the publish script) on one connection of `client`'s pool, then
        `WAIT` there; raises `PublishOutcomeUnknown` when fewer replicas acknowledged."""
        async with client.client() as conn:
            published = await run(conn.register_script(PUBLISH_SCRIPT))
            await self.wait(conn, published, history)
            return published

    async def wait(self, conn: aioredis.Redis, published: Published, history: str) -> None:
        if published.replayed:
            # The logs were stored by an earlier request, maybe over another connection, whose
            # writes this connection's WAIT would not cover: one write here (the history's
            # TTL, which the script sets anyway) moves this connection's offset past them.
            await conn.expire(history, self.history_ttl)
        acknowledged = int(await conn.wait(self.count, self.timeout_ms))
        if acknowledged < self.count:
            raise PublishOutcomeUnknown(
                f"{acknowledged} of the {self.count} replicas of PUBLISH_REPLICAS acknowledged "
                f"the publish within {self.timeout_ms} ms (PUBLISH_REPLICAS_TIMEOUT_MS)"
            )
