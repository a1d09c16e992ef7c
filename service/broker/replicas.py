"""PUBLISH_REPLICAS: a publish is acknowledged only once that many replicas hold it.

`WAIT n timeout` answers how many replicas acknowledged every write made so far *on the
connection it runs on*, so it follows the publish script on the script's own connection (Redis
refuses WAIT inside a script). Fewer than n within the timeout is not a failure to store: the
logs are on the primary, and may or may not survive a failover, so the publisher is told the
outcome is unknown (504) and retries with its Idempotency-Key, which stores them once.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from .base import PublishOutcomeUnknown
from .script import Published


async def wait_replicas(
    conn: aioredis.Redis,
    published: Published,
    replicas: int,
    timeout_ms: int,
    *,
    history: str,
    history_ttl: int,
) -> None:
    """`WAIT replicas timeout_ms` on `conn`, the connection that ran the script; raises
    `PublishOutcomeUnknown` when fewer replicas acknowledged."""
    if published.replayed:
        # The logs were stored by an earlier request, maybe over another connection, whose
        # writes this connection's WAIT would not cover: one write here (the history's TTL,
        # which the script sets anyway) moves this connection's offset past them.
        await conn.expire(history, history_ttl)
    acknowledged = int(await conn.wait(replicas, timeout_ms))
    if acknowledged < replicas:
        raise PublishOutcomeUnknown(
            f"{acknowledged} of the {replicas} replicas of PUBLISH_REPLICAS acknowledged the "
            f"publish within {timeout_ms} ms (PUBLISH_REPLICAS_TIMEOUT_MS)"
        )
