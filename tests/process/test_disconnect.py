"""A client that leaves is forgotten by the production server: no subscriber, no task left
behind (the app on an in-process runner: tests/app/test_disconnect.py)."""

from __future__ import annotations

import aiohttp

from tests.support.aio import poll_until
from tests.support.factories import StartService, auth
from tests.support.servers import RedisServer
from tests.support.sse import SSEStream


async def _gauges(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with http.get(url + "/metrics") as r:
        text = await r.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("roomlogs_") and " " in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


async def test_disconnect_leaves_no_subscriber_and_no_task_on_a_production_server(
    service: StartService, redis_server: RedisServer, room: str
) -> None:
    srv = await service(REDIS_URL=redis_server.url)
    async with aiohttp.ClientSession() as http:
        before = await _gauges(http, srv.url)
        assert before["roomlogs_connections"] == 0
        streams = []
        for _ in range(5):
            resp = await http.get(f"{srv.url}/api/v1/rooms/{room}/logs", headers=auth())
            assert (await SSEStream(resp).next()).event == "connected"
            streams.append(resp)
        during = await _gauges(http, srv.url)
        assert during["roomlogs_connections"] == 5
        assert during["roomlogs_rooms"] == 1
        for resp in streams:
            resp.close()  # the client goes away without a word

        async def settled() -> bool:
            g = await _gauges(http, srv.url)
            return (
                g["roomlogs_connections"] == 0
                and g["roomlogs_rooms"] == 0
                and g["roomlogs_loop_tasks"] <= before["roomlogs_loop_tasks"]
            )

        await poll_until(settled)
