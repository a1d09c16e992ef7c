"""Numbers: integers are kept exact or refused saying so; counts take ASCII digits only."""

from __future__ import annotations

import orjson
import pytest
import redis.asyncio as aioredis

from service.broker.keys import PLAIN
from tests.support.factories import MakeClient, auth
from tests.support.servers import RedisServer
from tests.support.sse import SSEStream

BIG = 123456789012345678901234567890


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, BIG])
async def test_a_post_with_an_integer_beyond_64_bits_is_refused_saying_so(
    make_client: MakeClient, room: str, value: int
) -> None:
    client = await make_client()
    body = b'{"agentType":"a","level":"info","message":"m","metadata":{"n":%d}}' % value
    r = await client.post(f"/api/v1/rooms/{room}/logs", data=body, headers=auth())
    assert r.status == 400
    error = await r.json()
    assert error["error"] == "invalid_json"
    assert "beyond 64 bits" in error["detail"]


async def test_integers_at_the_64_bit_edges_and_long_digit_strings_go_through(
    make_client: MakeClient, room: str
) -> None:
    client = await make_client()
    log = {
        "agentType": "a",
        "level": "info",
        "message": f"an id of {BIG} in the text",
        "metadata": {"max": 2**64 - 1, "min": -(2**63), "text": str(BIG)},
    }
    r = await client.post(f"/api/v1/rooms/{room}/logs", json=log, headers=auth())
    assert r.status == 202, await r.text()
    r = await client.get(f"/api/v1/rooms/{room}/logs/history", headers=auth())
    [stored] = (await r.json(loads=lambda t: orjson.loads(t)))["logs"]
    assert stored["metadata"] == log["metadata"]


async def test_a_plain_publish_keeps_big_integers_exact_even_when_a_timestamp_is_added(
    make_client: MakeClient, redis_server: RedisServer, room: str
) -> None:
    """No `timestamp` and a raw LF: the log used to be encoded again, its integer a float."""
    client = await make_client(redis=True)
    payload = b'{"agentType":"a",\n"level":"info","message":"m","metadata":{"n":%d}}' % BIG
    redis = aioredis.Redis.from_url(redis_server.url)
    async with client.get(f"/api/v1/rooms/{room}/logs", headers=auth()) as resp:
        sse = SSEStream(resp)
        assert (await sse.next()).event == "connected"
        await redis.publish(PLAIN.channel(room), payload)
        [event] = await sse.collect(1)
    await redis.aclose()
    assert "\n" not in event.data
    assert f'"n":{BIG}' in event.data
    assert "timestamp" in event.json()


@pytest.mark.parametrize("raw", ["1_0", "+5", " 5", "\u0665", "5.0", "-1", "1" * 12])
async def test_counts_take_ascii_digits_only(make_client: MakeClient, room: str, raw: str) -> None:
    client = await make_client()
    r = await client.get(
        f"/api/v1/rooms/{room}/logs/history", params={"limit": raw}, headers=auth()
    )
    assert r.status == 400
    assert (await r.json())["error"] == "invalid_limit"
    r = await client.get(f"/api/v1/rooms/{room}/logs", params={"history": raw}, headers=auth())
    assert r.status == 400
    assert (await r.json())["error"] == "invalid_history"


async def test_an_integer_beyond_64_bits_in_the_last_log_of_a_full_batch_is_refused(
    make_client: MakeClient, room: str
) -> None:
    client = await make_client()
    log = b'{"agentType":"a","level":"info","message":"m","metadata":{"n":%d}}'
    body = b"[" + b",".join([log % 1] * 99 + [log % BIG]) + b"]"
    r = await client.post(f"/api/v1/rooms/{room}/logs", data=body, headers=auth())
    assert r.status == 400
    error = await r.json()
    assert error["error"] == "invalid_json"
    assert error["detail"].startswith(f"the integer {str(BIG)[:24]}… is beyond 64 bits")
