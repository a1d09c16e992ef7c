"""A client that leaves is forgotten: no subscriber, no task left behind."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from service.app import create_app
from service.state import STATE

from .conftest import StartService, auth, settings
from .support import RedisServer, SSEStream, free_port, poll_until


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


async def test_sweep_notices_a_client_gone_even_without_handler_cancellation(room: str) -> None:
    """The test server forces handler cancellation on; a real runner without it must not leak."""
    app = create_app(settings())
    runner = web.AppRunner(app, handler_cancellation=False)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    hub = app[STATE].hub
    try:
        async with aiohttp.ClientSession() as http:
            resp = await http.get(
                f"http://127.0.0.1:{port}/api/v1/rooms/{room}/logs", headers=auth()
            )
            assert (await SSEStream(resp).next()).event == "connected"
            assert len(hub) == 1
            resp.close()

            async def gone() -> bool:
                return len(hub) == 0 and hub.room_count == 0

            await poll_until(gone)
    finally:
        await runner.cleanup()
