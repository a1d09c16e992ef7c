"""broker.script against Redis: the publish script tells redis-py's resend of one call from
another request with the same Idempotency-Key."""

from __future__ import annotations

import orjson
import redis.asyncio as aioredis

from service.broker.script import PUBLISH_SCRIPT, Published, store_and_publish
from service.handlers.publish import fingerprint
from tests.support.factories import sample_log
from tests.support.servers import RedisServer


async def test_a_resend_of_the_same_call_counts_as_the_first_store(
    redis_server: RedisServer, room: str
) -> None:
    """redis-py resends a command whose reply was lost (its `Retry`); the script tells that
    resend (same call, same nonce) from another request with the same key."""
    client = aioredis.Redis.from_url(redis_server.url)
    script = client.register_script(PUBLISH_SCRIPT)
    logs = [orjson.dumps(sample_log(0))]
    seen = fingerprint(b"body")

    async def call(nonce: str) -> Published:
        return await store_and_publish(
            script, room, logs, 100, 60, key="k-1", key_ttl=60, seen=seen, nonce=nonce
        )

    try:
        first, resent, other = await call("call-a"), await call("call-a"), await call("call-b")
        assert (first.replayed, resent.replayed, other.replayed) == (False, False, True)
        assert first.ids == resent.ids == other.ids
        assert await client.xlen(f"room:{room}:history") == 1
    finally:
        await client.aclose()
