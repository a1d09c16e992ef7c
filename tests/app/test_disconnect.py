"""A client that leaves is forgotten: the app on a real runner and TCP site, in this process
(the production process is tests/process/test_disconnect.py)."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest
from aiohttp import web

from service.app import create_app
from service.handlers import _handoff
from service.state import STATE
from tests.support.aio import poll_until
from tests.support.factories import auth, sample_log, settings
from tests.support.servers import free_port
from tests.support.sse import SSEStream


async def _serve(app: web.Application, *, handler_cancellation: bool) -> tuple[web.AppRunner, str]:
    """`app` on a real runner and TCP site, as the server runs it; the runner and its URL."""
    runner = web.AppRunner(app, handler_cancellation=handler_cancellation)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def test_sweep_notices_a_client_gone_even_without_handler_cancellation(room: str) -> None:
    """The test server forces handler cancellation on; a real runner without it must not leak."""
    app = create_app(settings())
    runner, base = await _serve(app, handler_cancellation=False)
    hub = app[STATE].hub
    try:
        async with aiohttp.ClientSession() as http:
            resp = await http.get(f"{base}/api/v1/rooms/{room}/logs", headers=auth())
            assert (await SSEStream(resp).next()).event == "connected"
            assert len(hub) == 1
            resp.close()

            async def gone() -> bool:
                return len(hub) == 0 and hub.room_count == 0

            await poll_until(gone)
    finally:
        await runner.cleanup()


async def test_a_live_stream_holds_no_task_and_no_aiohttp_connection(room: str) -> None:
    """After the hand-off a stream is its socket and its subscriber: aiohttp has let it go, no
    task waits for it, logs and the shutdown still reach it, and the body ends properly."""
    app = create_app(settings())
    runner, base = await _serve(app, handler_cancellation=True)
    state = app[STATE]
    server = runner.server
    assert server is not None
    url = f"{base}/api/v1/rooms/{room}/logs"
    cleaned = False
    try:
        async with aiohttp.ClientSession() as http:
            tasks_before = len(asyncio.all_tasks())
            streams = []
            for _ in range(20):
                stream = SSEStream(await http.get(url, headers=auth()))
                assert (await stream.next()).event == "connected"
                # It will end with a close: no load balancer may pool this connection.
                assert stream.resp.headers["Connection"] == "close"
                streams.append(stream)

            async def handed_off() -> bool:
                return not server.connections and len(asyncio.all_tasks()) <= tasks_before

            await poll_until(handed_off)
            assert len(state.hub) == 20
            r = await http.post(url, json=sample_log(1), headers=auth())
            assert r.status == 202
            for stream in streams:
                event = await stream.next()
                assert event.event == "log"
                assert orjson.loads(event.data)["message"] == "log 1"
            await runner.cleanup()  # the shutdown closes what aiohttp no longer knows of
            cleaned = True
            for stream in streams:
                event = await stream.next()
                assert (event.event, orjson.loads(event.data)["reason"]) == (
                    "unavailable",
                    "shutdown",
                )
                async with asyncio.timeout(5):
                    assert await stream.resp.content.read() == b""  # a clean end of body
            assert len(state.hub) == 0
    finally:
        if not cleaned:
            await runner.cleanup()


async def test_without_the_hand_off_a_stream_is_parked_and_still_served_and_ended(
    room: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path an aiohttp without the hand-off's private names takes: the handler stays,
    the stream gets its logs and its farewell, and a client that leaves ends it."""
    monkeypatch.setattr(_handoff, "can_detach", lambda request: False)
    app = create_app(settings())
    runner, base = await _serve(app, handler_cancellation=True)
    state = app[STATE]
    server = runner.server
    assert server is not None
    url = f"{base}/api/v1/rooms/{room}/logs"
    cleaned = False
    try:
        async with aiohttp.ClientSession() as http:
            leaving = SSEStream(await http.get(url, headers=auth()))
            staying = SSEStream(await http.get(url, headers=auth()))
            for stream in (leaving, staying):
                assert (await stream.next()).event == "connected"
            assert len(server.connections) == 2  # parked: aiohttp still holds them
            r = await http.post(url, json=sample_log(1), headers=auth())
            assert r.status == 202
            for stream in (leaving, staying):
                assert (await stream.next()).json()["message"] == "log 1"
            held = len(server.connections)  # the two streams, and the POST's kept-alive one
            leaving.resp.close()

            async def one_left() -> bool:
                return len(state.hub) == 1 and len(server.connections) == held - 1

            await poll_until(one_left)
            await runner.cleanup()
            cleaned = True
            event = await staying.next()
            assert (event.event, event.json()["reason"]) == ("unavailable", "shutdown")
            async with asyncio.timeout(5):
                assert await staying.resp.content.read() == b""
            assert len(state.hub) == 0
    finally:
        if not cleaned:
            await runner.cleanup()
