"""The Redis broker's connection pool: to one server (REDIS_URL), or to the primary that the
sentinels name (REDIS_SENTINELS, sentinel.py), with the same options either way."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..settings import Settings
from .sentinel import SentinelLink


def make_pool(settings: Settings) -> tuple[aioredis.BlockingConnectionPool, SentinelLink | None]:
    """The pool, and with Sentinel the link that follows failovers (its `watch` to run).

    A bounded pool that queues: a burst of requests waits up to REDIS_POOL_TIMEOUT for a
    connection instead of failing at once (redis-py's default pool refuses the 101st). No
    retries inside redis-py: a command resent after its answer was lost may run twice, so the
    broker's `_call` decides per command whether a resend is safe.
    """
    options: dict[str, Any] = {
        "max_connections": settings.redis_pool_size,
        "timeout": settings.redis_pool_timeout,
        "retry": Retry(NoBackoff(), retries=0),
        "socket_connect_timeout": 2.0,
        "socket_timeout": 5.0,
        "health_check_interval": 10,
        "protocol": 2,
    }
    if settings.redis_sentinels:
        link = SentinelLink(settings, **options)
        return link.pool, link
    assert settings.redis_url is not None
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url,
        **options,
        **settings.redis_options,  # TLS files: this pool serves every command and pub/sub
    )
    return pool, None
