"""tail: how `roomlogs tail` prints a log and retries, against small real servers (the command
itself runs in tests/process/test_publishers.py)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
import pytest
from aiohttp import web

from service.events import connected_frame, log_frame
from service.tail import format_log, tail
from tests.support.servers import free_port

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def test_tail_colours_levels_only_on_request() -> None:
    log = {"timestamp": "t", "level": "error", "agentType": "code", "message": "boom"}
    assert format_log(log, colour=False) == "t ERROR   [code] boom"
    coloured = format_log(log, colour=True)
    assert coloured.startswith("\033[31;1m")
    assert coloured.endswith("\033[0m")
    assert "boom" in coloured


async def test_an_outage_is_one_line_however_many_attempts_it_takes() -> None:
    """A server that refuses three times (`unavailable`, retry in 20 ms), then streams: tail
    says once that it is disconnected, once that it is back, and prints the log."""
    attempts = 0
    refusal = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
        b'retry: 20\nevent: unavailable\ndata: {"reason":"draining","retryMs":20}\n\n'
    )
    stream = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
        b'event: connected\ndata: {"roomId":"r"}\n\n'
        b'id: 1-0\nevent: log\ndata: {"level":"info","agentType":"code","message":"hi"}\n\n'
    )

    writers: list[asyncio.StreamWriter] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal attempts
        writers.append(writer)
        await reader.readuntil(b"\r\n\r\n")
        attempts += 1
        writer.write(refusal if attempts <= 3 else stream)
        await writer.drain()
        if attempts <= 3:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    out, err = io.StringIO(), io.StringIO()
    try:
        async with asyncio.timeout(20):
            code = await tail(
                f"http://127.0.0.1:{port}", "r", None, out=out, err=err, colour=False, max_logs=1
            )
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()
    assert code == 0
    assert attempts == 4
    assert out.getvalue().splitlines()[-1].endswith("[code] hi")
    lines = err.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert lines[0] == "-- disconnected (unavailable: draining); reconnecting"
    assert lines[1].startswith("-- reconnected after ")


@pytest.fixture
async def front() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """A small real HTTP front, answering as a failing load balancer or the gateway would."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_a_proxys_502_is_an_outage_retried_not_an_exit(
    front: Callable[[Handler], Awaitable[str]],
) -> None:
    """While the gateway restarts, the load balancer answers 502: tail keeps trying, with the
    id it had, and tells the outage once."""
    asked: list[str | None] = []
    log = orjson.dumps({"level": "warn", "agentType": "code", "message": "m"})

    async def handler(request: web.Request) -> web.StreamResponse:
        asked.append(request.headers.get("Last-Event-ID"))
        if len(asked) == 2:
            return web.Response(status=502, text="bad gateway")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(connected_frame({"roomId": "r"}, 10))
        await resp.write(log_frame(f"1-{len(asked)}", log))
        return resp  # and the stream ends

    out, err = io.StringIO(), io.StringIO()
    async with asyncio.timeout(20):
        code = await tail(
            await front(handler), "r", None, out=out, err=err, colour=False, max_logs=2
        )
    assert code == 0
    assert len(out.getvalue().splitlines()) == 2
    assert asked == [None, "1-1", "1-1"]
    lines = err.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert lines[0] == "-- disconnected (the stream ended); reconnecting"
    assert lines[1].startswith("-- reconnected after ")


async def test_a_final_refusal_exits_at_once(front: Callable[[Handler], Awaitable[str]]) -> None:
    calls = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        body = {"error": "room_not_allowed", "detail": "room 'b' is not in the token's claim"}
        return web.json_response(body, status=403)

    out, err = io.StringIO(), io.StringIO()
    async with asyncio.timeout(10):
        code = await tail(await front(handler), ["a", "b"], None, out=out, err=err)
    assert code == 1
    assert out.getvalue() == ""
    assert err.getvalue().startswith("roomlogs tail: 403 ")
    assert "room 'b' is not in the token's claim" in err.getvalue()
    assert calls == 1
