"""REQUEST_HEAD_TIMEOUT on the production server: a connection that sends nothing, half a request
line or a trickle of header bytes is closed once the timeout passes, counted in /metrics and
logged without what it sent; a kept-alive connection idles until KEEPALIVE_TIMEOUT and then
has REQUEST_HEAD_TIMEOUT for its next head; a request whose head was whole (a slow body) and a
live stream are never cut."""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp
import orjson

from tests.support.aio import background, poll_until
from tests.support.factories import StartService, auth, sample_log, token
from tests.support.servers import ServiceProcess
from tests.support.sse import SSEStream

HEAD_TIMEOUT = 1.0
SLACK = 2.0  # how late a close may come on a loaded machine
TRICKLE = 0.3  # seconds between two bytes of a slow client
METRIC = "roomlogs_request_head_timeouts_total"
SECRET_MARK = "do-not-log-me"  # in what the slow clients send: it must never reach the log


async def _head_timeouts(srv: ServiceProcess) -> float:
    # A connection of its own each time: a pooled one could be the server's to close.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.get(srv.url + "/metrics") as r:
            text = await r.text()
    for line in text.splitlines():
        if line.startswith(METRIC + " "):
            return float(line.split()[1])
    raise AssertionError(f"{METRIC} is not in /metrics")


async def _closed_within(reader: asyncio.StreamReader, since: float, bound: float) -> float:
    """Read until the server closes (EOF or reset), within `bound` seconds of `since`; the
    seconds from `since` to the close. The server answers nothing before closing."""
    received = b""
    with contextlib.suppress(ConnectionError):
        async with asyncio.timeout(since + bound - time.monotonic()):
            while chunk := await reader.read(65536):
                received += chunk
    assert received == b"", received[:200]
    return time.monotonic() - since


async def _trickle(writer: asyncio.StreamWriter, data: bytes) -> None:
    """One byte every TRICKLE seconds (the pace of the client, not a wait for the server)."""
    with contextlib.suppress(ConnectionError):
        for i in range(len(data)):
            writer.write(data[i : i + 1])
            await writer.drain()
            await asyncio.sleep(TRICKLE)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    async with asyncio.timeout(10):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(
            int(line.split(":", 1)[1])
            for line in lines
            if line.lower().startswith("content-length:")
        )
        return int(lines[0].split()[1]), await reader.readexactly(length)


def _timeout_lines(srv: ServiceProcess) -> list[dict[str, object]]:
    entries = [orjson.loads(line) for line in srv.output().splitlines() if line.startswith("{")]
    return [e for e in entries if str(e["message"]).startswith("request head timeout")]


async def test_silent_half_sent_and_trickled_heads_are_closed_counted_and_logged(
    service: StartService,
) -> None:
    srv = await service(REQUEST_HEAD_TIMEOUT=str(HEAD_TIMEOUT), LOG_FORMAT="json")
    trickled = (
        f"GET /api/v1/rooms/r/logs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SECRET_MARK}"
        + "x" * 100
    ).encode()

    async def client(first: bytes, trickle: bytes = b"") -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        opened = time.monotonic()
        try:
            writer.write(first)
            async with background(_trickle(writer, trickle)):
                return await _closed_within(reader, opened, HEAD_TIMEOUT + SLACK)
        finally:
            writer.close()

    silent, half_line, trickling = await asyncio.gather(
        client(b""),
        client(f"GET /api/v1/rooms/r/logs?access_token={SECRET_MARK}".encode()),
        client(b"", trickle=trickled),  # ~30 s of trickle left when the server closes
    )
    for took in (silent, half_line, trickling):
        assert HEAD_TIMEOUT - 0.1 <= took <= HEAD_TIMEOUT + SLACK, (silent, half_line, trickling)
    assert await _head_timeouts(srv) == 3  # from 0: the readiness probes sent whole heads

    async def logged() -> bool:
        return len(_timeout_lines(srv)) == 3

    await poll_until(logged)
    lines = _timeout_lines(srv)
    assert all(line["level"] == "INFO" and line["remote"] == "127.0.0.1" for line in lines)
    assert sorted(int(str(line["head_bytes"])) > 0 for line in lines) == [False, True, True]
    assert SECRET_MARK not in srv.output()


async def test_a_kept_alive_connection_idles_until_keepalive_then_times_its_next_head(
    service: StartService,
) -> None:
    """The wait for the next request's first byte is KEEPALIVE_TIMEOUT's (a load balancer's pooled
    connection may idle longer than a head may take): closed then, not counted. From that first
    byte on, the head has REQUEST_HEAD_TIMEOUT."""
    keepalive = 3.0
    srv = await service(REQUEST_HEAD_TIMEOUT=str(HEAD_TIMEOUT), KEEPALIVE_TIMEOUT=str(keepalive))

    async def client(next_head: bytes) -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _ = await _read_response(reader)
            assert status == 200
            answered = time.monotonic()
            writer.write(next_head)
            return await _closed_within(reader, answered, keepalive + SLACK)
        finally:
            writer.close()

    idle, half_sent = await asyncio.gather(client(b""), client(b"GET /heal"))
    assert keepalive - 0.1 <= idle <= keepalive + SLACK, idle  # not at the head timeout
    assert HEAD_TIMEOUT - 0.1 <= half_sent <= HEAD_TIMEOUT + SLACK, half_sent
    assert await _head_timeouts(srv) == 1  # the half-sent head; the idle close is keep-alive's


async def test_a_slow_body_and_a_live_stream_outlive_the_head_timeout(
    service: StartService, room: str
) -> None:
    srv = await service(REQUEST_HEAD_TIMEOUT=str(HEAD_TIMEOUT))
    url = f"{srv.url}/api/v1/rooms/{room}/logs"
    body = orjson.dumps(sample_log(7))
    assert len(body) * TRICKLE / 8 > 3 * HEAD_TIMEOUT  # the body takes three timeouts or more
    async with aiohttp.ClientSession() as http:
        stream = SSEStream(await http.get(url, headers=auth()))
        assert (await stream.next()).event == "connected"
        opened = time.monotonic()

        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        try:
            writer.write(
                f"POST /api/v1/rooms/{room}/logs HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {token()}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
            )
            for i in range(0, len(body), 8):  # 8 bytes every TRICKLE seconds
                writer.write(body[i : i + 8])
                await writer.drain()
                await asyncio.sleep(TRICKLE)  # the slow client's pace
            status, answer = await _read_response(reader)
        finally:
            writer.close()
        assert status == 202, answer
        assert time.monotonic() - opened > 3 * HEAD_TIMEOUT

        event = await stream.next()  # the stream, open for three timeouts, gets the slow log
        assert (event.event, event.json()["message"]) == ("log", "log 7")
        stream.resp.close()
    assert await _head_timeouts(srv) == 0
