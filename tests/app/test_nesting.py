"""Deeply nested logs: refused with a reason on every path, and the reader keeps going."""

from __future__ import annotations

from typing import Any

import orjson
import redis.asyncio as aioredis

from service.broker.keys import PLAIN
from service.state import STATE
from tests.support.factories import MakeClient, auth, sample_log
from tests.support.servers import RedisServer
from tests.support.sse import SSEStream


def nested(depth: int, **extra: Any) -> dict[str, Any]:
    """A log whose metadata nests objects `depth` deep (the log itself is the first level)."""
    inner: dict[str, Any] = {}
    for _ in range(depth - 2):
        inner = {"k": inner}
    return {**sample_log(0), "metadata": inner, **extra}


async def test_a_post_nested_too_deep_is_refused_with_the_reason(
    make_client: MakeClient, broker_kind: str, room: str
) -> None:
    client = await make_client(redis=broker_kind == "redis")
    url = f"/api/v1/rooms/{room}/logs"
    r = await client.post(url, json=nested(64), headers=auth())
    assert r.status == 202, await r.text()
    for depth in (65, 300):
        r = await client.post(url, json=nested(depth), headers=auth())
        assert r.status == 400
        body = await r.json()
        assert body["error"] == "invalid_log"
        assert "more than 64 deep" in body["detail"]
    r = await client.post(url, json=[sample_log(1), nested(300)], headers=auth())
    assert r.status == 400
    assert (await r.json())["detail"].startswith("[1].")
    r = await client.post(url, data=b"[" * 2000 + b"]" * 2000, headers=auth())
    assert r.status == 400
    assert (await r.json())["error"] == "invalid_json"


async def test_a_plain_publish_nested_too_deep_is_counted_and_skipped_and_the_rest_arrives(
    make_client: MakeClient, redis_server: RedisServer, room: str
) -> None:
    """Nested 300 deep and without `timestamp` (so it would be re-encoded): it used to make
    orjson raise in the reader, dropping the subscription and the rest of the batch."""
    client = await make_client(redis=True)
    state = client.app[STATE]
    redis = aioredis.Redis.from_url(redis_server.url)
    # No `timestamp`, so it would be re-encoded; built by hand: orjson cannot encode it.
    deep = b'{"agentType":"story","level":"info","message":"deep","metadata":'
    deep += b'{"k":' * 298 + b"{}" + b"}" * 298 + b"}"

    async with client.get(f"/api/v1/rooms/{room}/logs", headers=auth()) as resp:
        sse = SSEStream(resp)
        assert (await sse.next()).event == "connected"
        async with redis.pipeline(transaction=False) as pipe:
            pipe.publish(PLAIN.channel(room), deep)
            pipe.publish(PLAIN.channel(room), orjson.dumps(sample_log(7)))
            await pipe.execute()
        [event] = await sse.collect(1)
        assert event.json()["message"] == "log 7"
    await redis.aclose()
    skipped = state.metrics.registry.get_sample_value(
        "roomlogs_broker_invalid_messages_total", {"reason": "too_deep"}
    )
    assert skipped == 1
    assert state.broker.ready
    reconnects = state.metrics.registry.get_sample_value("roomlogs_broker_reconnects_total")
    assert reconnects == 0


async def test_history_serves_a_stored_log_that_orjson_could_not_encode_again(
    make_client: MakeClient, redis_server: RedisServer, room: str
) -> None:
    """Stored before any bound existed (or by another writer): the page is built from the
    stored bytes, so it answers 200 with the log instead of 500."""
    client = await make_client(redis=True)

    deep = orjson.dumps(sample_log(1))[:-1] + b',"deep":' + b"[" * 253 + b"]" * 253 + b"}"
    redis = aioredis.Redis.from_url(redis_server.url)
    added = await redis.xadd(PLAIN.history(room), {"log": deep})
    stream_id = added.decode() if isinstance(added, bytes) else added
    await redis.aclose()
    r = await client.get(f"/api/v1/rooms/{room}/logs/history", headers=auth())
    assert r.status == 200, await r.text()
    body = await r.json()
    assert [log["id"] for log in body["logs"]] == [stream_id]
    assert body["logs"][0]["message"] == "log 1"
    assert body["next"] is None


async def test_a_full_batch_nested_to_the_limit_is_stored_and_one_past_it_is_named(
    make_client: MakeClient, room: str
) -> None:
    """100 logs have more brackets than the limit between them, none too deep on its own; the
    one too deep is named by its index, also past orjson's own limit of 254 levels."""
    client = await make_client()
    url = f"/api/v1/rooms/{room}/logs"
    r = await client.post(url, json=[nested(64) for _ in range(100)], headers=auth())
    assert r.status == 202, await r.text()
    assert r.content_type == "application/json"
    assert len((await r.json())["ids"]) == 100
    for depth in (65, 255):
        batch = [nested(64) for _ in range(99)] + [nested(depth)]
        r = await client.post(url, json=batch, headers=auth())
        assert r.status == 400
        body = await r.json()
        assert body == {
            "error": "invalid_log",
            "detail": "[99].nests objects and arrays more than 64 deep",
        }
