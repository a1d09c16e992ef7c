"""broker.script against Redis: the publish script tells redis-py's resend of one call from
another request with the same Idempotency-Key; both scripts tag their envelopes as
`broker.envelope` checks them; the plain script stores each occurrence of a payload once."""

from __future__ import annotations

import asyncio

import orjson
import redis.asyncio as aioredis

from service.broker.envelope import ENVELOPE_SECRET_KEY, Envelopes, read_secret, split_envelope
from service.broker.script import PLAIN_SCRIPT, PUBLISH_SCRIPT, Published, store_and_publish
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
            script,
            room,
            logs,
            100,
            60,
            secret=b"s",
            key="k-1",
            key_ttl=60,
            seen=seen,
            nonce=nonce,
        )

    try:
        first, resent, other = await call("call-a"), await call("call-a"), await call("call-b")
        assert (first.replayed, resent.replayed, other.replayed) == (False, False, True)
        assert first.ids == resent.ids == other.ids
        assert await client.xlen(f"room:{room}:history") == 1
    finally:
        await client.aclose()


async def test_both_scripts_tag_envelopes_as_the_gateways_check_them(
    redis_server: RedisServer, room: str
) -> None:
    """Lua's `redis.sha1hex` and Python's hashlib agree on the tag, for the service's publish
    and for a stored plain PUBLISH; the secret is made once and then shared."""
    client = aioredis.Redis.from_url(redis_server.url)
    pubsub = client.pubsub()
    try:
        await client.delete(ENVELOPE_SECRET_KEY)
        secret = await read_secret(client)
        assert await read_secret(client) == secret == await client.get(ENVELOPE_SECRET_KEY)
        await pubsub.subscribe(f"room:{room}:logs")
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        log = orjson.dumps(sample_log(0))
        published = await store_and_publish(
            client.register_script(PUBLISH_SCRIPT), room, [log], 100, 60, secret=secret
        )
        plain = client.register_script(PLAIN_SCRIPT)
        plain_id = await plain(
            keys=[f"room:{room}:history", f"room:{room}:logs", f"room:{room}:plain:d"],
            args=[100, 60, secret, 1, 10, log],
        )
        assert plain_id is not None
        envelopes = Envelopes(secret)
        for want in (published.ids[0], plain_id.decode()):
            msg = await _next_message(pubsub)
            parts = split_envelope(msg)
            assert parts is not None
            stream_id, _, tag, body = parts
            assert (stream_id, body) == (want, log)
            assert envelopes.verify(stream_id, body, tag)
            assert not Envelopes(b"other").verify(stream_id, body, tag)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()


async def _next_message(pubsub: aioredis.client.PubSub) -> bytes:
    async with asyncio.timeout(5):
        while True:
            msg = await pubsub.get_message(timeout=1)
            if msg is not None and msg["type"] == "message":
                data: bytes = msg["data"]
                return data


async def test_the_plain_script_stores_each_occurrence_once(
    redis_server: RedisServer, room: str
) -> None:
    """Three gateways that each received the same payload twice: two logs stored, not six;
    a gateway that joined after the first copy (it counts 1 for the second) stores nothing."""
    client = aioredis.Redis.from_url(redis_server.url)
    plain = client.register_script(PLAIN_SCRIPT)
    names = [f"room:{room}:history", f"room:{room}:logs", f"room:{room}:plain:d"]

    async def run(occurrence: int) -> bytes | None:
        reply: bytes | None = await plain(keys=names, args=[100, 60, b"s", occurrence, 10, b"{}"])
        return reply

    try:
        first = [await run(1) for _ in range(3)]
        late = await run(1)
        second = [await run(2) for _ in range(3)]
        assert [r is not None for r in first] == [True, False, False]
        assert late is None
        assert [r is not None for r in second] == [True, False, False]
        assert await client.xlen(names[0]) == 2
        assert 0 < await client.ttl(names[2]) <= 10
    finally:
        await client.aclose()
