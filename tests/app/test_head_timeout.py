"""The request-head timeout's runner in this process (the production server:
tests/process/test_head_timeout.py): a parked stream is never cut, and an aiohttp without the
private names it needs gets aiohttp's own server and a warning."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest
from aiohttp import web

from service import _head_timeout
from service._head_timeout import HeadTimeoutRunner
from service.app import create_app
from service.handlers import _handoff
from tests.support.factories import auth, sample_log, settings
from tests.support.servers import free_port
from tests.support.sse import SSEStream

HEAD_TIMEOUT = 0.2


async def _serve(timeouts: list[None]) -> tuple[HeadTimeoutRunner, int]:
    runner = HeadTimeoutRunner(
        create_app(settings()),
        head_timeout=HEAD_TIMEOUT,
        on_timeout=lambda: timeouts.append(None),
        handler_cancellation=True,
    )
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


async def test_a_parked_stream_outlives_the_head_timeout_and_a_silent_socket_does_not(
    room: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parked (an aiohttp without the hand-off's names), a stream's request stays in progress
    in aiohttp's handler, on the transport the timer would close: it must not."""
    monkeypatch.setattr(_handoff, "can_detach", lambda request: False)
    timeouts: list[None] = []
    runner, port = await _serve(timeouts)
    url = f"http://127.0.0.1:{port}/api/v1/rooms/{room}/logs"
    try:
        async with aiohttp.ClientSession() as http:
            stream = SSEStream(await http.get(url, headers=auth()))
            assert (await stream.next()).event == "connected"
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            async with asyncio.timeout(5):
                assert await reader.read() == b""  # closed by the head timeout
            writer.close()
            assert len(timeouts) == 1
            r = await http.post(url, json=sample_log(1), headers=auth())  # > 1 timeout later
            assert r.status == 202
            assert (await stream.next()).json()["message"] == "log 1"
            stream.resp.close()
        assert len(timeouts) == 1
    finally:
        await runner.cleanup()


async def test_a_head_sent_behind_a_busy_request_waits_for_it_then_is_timed() -> None:
    """Bytes of a next head that come while the previous request's handler still runs (and
    longer than the timeout): that request is answered in full, then the half head is cut."""
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        started.set()
        await release.wait()
        return web.Response(text="done")

    app = web.Application()
    app.router.add_get("/slow", slow)
    timeouts: list[None] = []
    runner = HeadTimeoutRunner(
        app, head_timeout=HEAD_TIMEOUT, on_timeout=lambda: timeouts.append(None)
    )
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(5):
            await started.wait()
        writer.write(b"GET /sl")  # the next head, half of it, while the handler runs
        await asyncio.sleep(3 * HEAD_TIMEOUT)  # the handler runs past the timeout: the test
        assert not timeouts
        release.set()
        async with asyncio.timeout(5):
            answer = await reader.read(-1)  # the whole answer, then the close
        assert answer.startswith(b"HTTP/1.1 200 OK"), answer
        assert answer.endswith(b"done"), answer
        assert len(timeouts) == 1
        writer.close()
    finally:
        await runner.cleanup()


async def test_without_the_private_names_aiohttp_serves_and_a_warning_says_so(
    room: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_head_timeout, "_PRIVATE_HANDLER_NAMES", ("_waiter", "_not_in_aiohttp"))
    caplog.set_level(logging.INFO, logger="service")
    runner, port = await _serve([])
    try:
        assert type(runner.server) is web.Server
        assert any(
            r.levelno == logging.WARNING and "REQUEST_HEAD_TIMEOUT is not enforced" in r.message
            for r in caplog.records
        )
        async with aiohttp.ClientSession() as http:
            r = await http.get(f"http://127.0.0.1:{port}/api/v1/rooms/{room}/logs/history")
            assert r.status == 401  # served as ever (no token)
    finally:
        await runner.cleanup()


async def test_with_the_private_names_the_active_path_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="service")
    runner, _ = await _serve([])
    try:
        assert type(runner.server) is not web.Server
        assert any(
            r.levelno == logging.INFO and "(REQUEST_HEAD_TIMEOUT)" in r.message
            for r in caplog.records
        )
    finally:
        await runner.cleanup()
