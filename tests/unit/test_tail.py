"""tail: how `roomlogs tail` prints a log (the command itself runs in
tests/process/test_publishers.py)."""

from __future__ import annotations

import asyncio
import io

from service.tail import format_log, tail


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
