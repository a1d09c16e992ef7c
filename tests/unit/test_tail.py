"""tail: how `roomlogs tail` prints a log, and how it retries, against a small real HTTP front
that answers as a failing load balancer would (the command itself against the real gateway:
tests/process/test_publishers.py and tests/process/test_cli.py)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
import pytest
from aiohttp import web

from service.events import EventName, connected_frame, event_frame, log_frame
from service.tail import format_log, tail
from tests.support.servers import free_port

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LOG = {"timestamp": "t", "level": "error", "agentType": "code", "message": "boom"}


def test_tail_colours_levels_only_on_request() -> None:
    log = {"timestamp": "t", "level": "error", "agentType": "code", "message": "boom"}
    assert format_log(log, colour=False) == "t ERROR   [code] boom"
    coloured = format_log(log, colour=True)
    assert coloured.startswith("\033[31;1m")
    assert coloured.endswith("\033[0m")
    assert "boom" in coloured
    assert format_log(log, colour=False, room="r1") == "t r1 ERROR   [code] boom"


@pytest.fixture
async def front() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
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


async def sse(request: web.Request, *frames: bytes) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for frame in frames:
        await resp.write(frame)
    return resp  # the stream ends here, as when the gateway goes away


def connected(**extra: object) -> bytes:
    return connected_frame({"timestamp": "t", "recovered": True, **extra}, 100)


async def run_tail(url: str, rooms: list[str], **kw: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    async with asyncio.timeout(10):
        code = await tail(url, rooms, "tok", out=out, err=err, colour=False, backoff=0.01, **kw)  # type: ignore[arg-type]
    return code, out.getvalue(), err.getvalue()


async def test_an_outage_is_told_once_however_many_attempts(
    front: Callable[[Handler], Awaitable[str]],
) -> None:
    seen: list[tuple[str, str | None]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append((request.path_qs, request.headers.get("Last-Event-ID")))
        n = len(seen)
        if n == 1:  # a transient refusal, then the gateway closes the stream: an outage
            unavailable = event_frame(
                EventName.UNAVAILABLE, {"reason": "max_connections", "retryMs": 10}
            )
            return await sse(request, unavailable)
        if n == 2:
            return await sse(request, connected(), log_frame("1-0", orjson.dumps(LOG)))
        if n <= 7:  # the stream ended, then five refused attempts: one more outage
            return web.Response(status=502, text="bad gateway")
        return await sse(request, connected(), log_frame("1-1", orjson.dumps(LOG)))

    url = await front(handler)
    code, out, err = await run_tail(url, ["r"], max_logs=2)
    assert code == 0
    assert out.splitlines() == ["t ERROR   [code] boom"] * 2
    lines = err.splitlines()
    assert len(lines) == 4, err
    assert lines[0] == "-- the gateway is unavailable (max_connections); reconnecting"
    assert lines[1].startswith("-- back after ")
    assert lines[1].endswith(" s (1 attempt)")
    assert lines[2] == "-- the stream ended; reconnecting"
    assert lines[3].endswith(" s (6 attempts)")
    # Every retry resumed after the last id it had.
    assert [last for _, last in seen] == [None, None] + ["1-0"] * 6
    assert all(path == "/api/v1/rooms/r/logs" for path, _ in seen)


async def test_several_rooms_share_the_multi_room_stream_with_filters(
    front: Callable[[Handler], Awaitable[str]],
) -> None:
    asked: list[web.Request] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        asked.append(request)
        logs = [
            log_frame(f"r1.cursor{i}", orjson.dumps({"roomId": room, **LOG}))
            for i, room in enumerate(["a", "b"])
        ]
        return await sse(request, connected(rooms=["a", "b"]), *logs)

    url = await front(handler)
    code, out, _ = await run_tail(
        url, ["a", "b"], max_logs=2, history=5, level="warn", agent="code"
    )
    assert code == 0
    assert out.splitlines() == ["t a ERROR   [code] boom", "t b ERROR   [code] boom"]
    (request,) = asked
    assert request.path == "/api/v1/logs"
    assert dict(request.query) == {
        "rooms": "a,b",
        "history": "5",
        "level": "warn",
        "agentType": "code",
    }
    assert request.headers["Authorization"] == "Bearer tok"


async def test_a_final_refusal_exits_at_once(front: Callable[[Handler], Awaitable[str]]) -> None:
    calls = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        body = {"error": "room_not_allowed", "detail": "room 'b' is not in the token's claim"}
        return web.json_response(body, status=403)

    code, out, err = await run_tail(await front(handler), ["a", "b"])
    assert code == 1
    assert out == ""
    assert err.startswith("roomlogs tail: 403 ")
    assert "room 'b' is not in the token's claim" in err
    assert calls == 1
