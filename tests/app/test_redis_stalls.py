"""A stalled Redis (SIGSTOP) and a busy one: readiness tells the truth, a publish whose outcome
is unknown says so (never "not stored"), and requests queue for a connection instead of being
refused while Redis is healthy."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from service.app import create_app
from service.state import STATE
from tests.support.aio import poll_until
from tests.support.factories import Client, MakeClient, auth, sample_log, settings
from tests.support.servers import RedisServer, free_port
from tests.support.sse import SSEStream


async def _ready(client: Client) -> int:
    async with client.get("/readyz") as r:
        return r.status


async def test_a_stalled_redis_turns_readiness_down_and_publishes_say_the_outcome_is_unknown(
    make_client: MakeClient, own_redis: RedisServer, room: str
) -> None:
    client = await make_client(redis=True, redis_url=own_redis.url)
    url = f"/api/v1/rooms/{room}/logs"
    r = await client.post(url, json=sample_log(0), headers=auth())
    assert r.status == 202
    own_redis.pause()
    try:
        keyless = await client.post(url, json=sample_log(1), headers=auth())
        keyed = await client.post(
            url, json=sample_log(2), headers={**auth(), "Idempotency-Key": "stalled-2"}
        )
        for resp, advice in ((keyless, "with an Idempotency-Key"), (keyed, "the same")):
            assert resp.status == 504
            assert resp.headers["Retry-After"] == "1"
            body = await resp.json()
            assert body["error"] == "publish_outcome_unknown"
            assert "may or may not have been stored" in body["detail"]
            assert advice in body["detail"]

        async def not_ready() -> bool:  # the subscription's probe goes unanswered
            return await _ready(client) == 503

        await poll_until(not_ready, timeout=20)
        async with client.get("/readyz") as r:
            assert "broker" in (await r.json())["reason"]
    finally:
        own_redis.resume()

    async def ready() -> bool:
        return await _ready(client) == 200

    await poll_until(ready, timeout=20)
    registry = client.app[STATE].metrics.registry
    losses = "roomlogs_broker_subscription_losses_total"
    assert registry.get_sample_value(losses, {"kind": "stalled"}) == 1  # /metrics says so
    assert registry.get_sample_value(losses, {"kind": "lost"}) is None
    # Whether the stalled attempt ran when Redis went on or not, sending it again with the
    # same key settles it: stored once.
    again = await client.post(
        url, json=sample_log(2), headers={**auth(), "Idempotency-Key": "stalled-2"}
    )
    assert again.status == 202
    r = await client.get(url + "/history", headers=auth())
    messages = [log["message"] for log in (await r.json())["logs"]]
    assert messages.count("log 2") == 1


async def test_a_burst_of_requests_queues_for_redis_connections_instead_of_failing(
    redis_server: RedisServer, room: str
) -> None:
    """200 POSTs and 200 resuming streams at once through a pool of 4 connections: each
    waits its turn (REDIS_POOL_TIMEOUT) and none is refused while Redis is healthy."""
    app = create_app(settings(redis_url=redis_server.url, redis_pool_size=4))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}/api/v1/rooms/{room}/logs"
    try:
        async with asyncio.timeout(10):
            await app[STATE].broker.wait_live()
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def post(i: int) -> int:
                async with http.post(base, json=sample_log(i), headers=auth()) as r:
                    return r.status

            statuses = await asyncio.gather(*(post(i) for i in range(200)))
            assert statuses == [202] * 200

            async def resume() -> str:
                headers = {**auth(), "Last-Event-ID": "0-1"}
                async with http.get(base, headers=headers) as r:
                    return (await SSEStream(r).next()).event

            events = await asyncio.gather(*(resume() for _ in range(200)))
            assert events == ["connected"] * 200
        refused = app[STATE].metrics.registry.get_sample_value(
            "roomlogs_rejected_requests_total", {"reason": "broker_unavailable"}
        )
        assert refused is None
    finally:
        await runner.cleanup()
