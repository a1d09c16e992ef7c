"""Redis dies and comes back while streams are open: readiness follows, streams survive."""

from __future__ import annotations

import aiohttp

from tests.support.aio import poll_until
from tests.support.factories import StartService, auth, sample_log
from tests.support.servers import RedisServer
from tests.support.sse import SSEStream


async def _ready_status(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, str]]:
    async with http.get(url + "/readyz") as r:
        return r.status, await r.json()


async def _wait_ready(http: aiohttp.ClientSession, url: str, status: int) -> dict[str, str]:
    body: dict[str, str] = {}

    async def answered() -> bool:
        nonlocal body
        got, body = await _ready_status(http, url)
        return got == status

    await poll_until(answered, timeout=20)
    return body


async def test_redis_restart_keeps_streams_and_readiness_follows(
    service: StartService, own_redis: RedisServer, room: str
) -> None:
    srv = await service(REDIS_URL=own_redis.url, HEARTBEAT_INTERVAL="0.5")
    url = f"{srv.url}/api/v1/rooms/{room}/logs"
    async with aiohttp.ClientSession() as http:
        responses = [await http.get(url, headers=auth()) for _ in range(3)]
        streams = [SSEStream(r) for r in responses]
        for s in streams:
            assert (await s.next()).event == "connected"
        assert (await _ready_status(http, srv.url))[0] == 200

        own_redis.kill()
        body = await _wait_ready(http, srv.url, 503)
        assert body["reason"].startswith("broker")

        # A new stream during the outage gets the transient refusal, never a final status.
        async with http.get(url, headers=auth()) as refused:
            assert refused.status == 200
            ev = await SSEStream(refused).next()
            assert ev.event == "unavailable"
            assert ev.retry is not None
            assert ev.json()["reason"] == "broker_unavailable"
        # Publishing is refused: it would not be stored.
        async with http.post(url, json=sample_log(0), headers=auth()) as r:
            assert r.status == 503
            assert r.headers["Retry-After"]

        # The open streams stay open through the outage (heartbeats keep flowing).
        for s in streams:
            assert (await s.next(skip=())).event == "heartbeat"

        own_redis.start()
        await _wait_ready(http, srv.url, 200)

        for i in range(3):
            async with http.post(url, json=sample_log(i), headers=auth()) as r:
                assert r.status == 202
        for s in streams:
            got = await s.collect(3)
            assert [e.json()["message"] for e in got] == ["log 0", "log 1", "log 2"]
        for r in responses:
            r.close()
