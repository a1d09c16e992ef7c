"""bench.storm's parts that need no Redis: the `id:` scan, the resumed request, a resuming
stream over a real loopback socket (ids cut between reads, done once caught up), the tables."""

from __future__ import annotations

import asyncio

from bench.reader import LF_CONNECTED, Recorder
from bench.report_storm import StormRun, SystemRun, markdown
from bench.resuming import ResumingStream, last_id, with_last_event_id


def test_the_last_complete_id_line_is_read() -> None:
    data = b"\nid: 1-0\nevent: log\ndata: {}\n\nid: 2-0\nevent: log\ndata: {}\n\nid: 3-"
    assert last_id(data)[0] == b"2-0"
    assert last_id(b'\ndata: {"id": "x"}\n\n')[0] is None


def test_last_event_id_goes_among_the_headers() -> None:
    get = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
    assert (
        with_last_event_id(get, b"5-0")
        == b"GET /a HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 5-0\r\n\r\n"
    )
    assert with_last_event_id(get, None) == get


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
FRAMES = [
    HEAD + b"retry: 1000\nevent: connected\ndata: {}\n\nid: 17-0\nevent: log\ndata: {",
    b'"metadata":{"sentAt":1.0}}\n\nid: 18',  # an id cut between two writes
    b"-0\nevent: log\ndata: {}\n\n",
]


async def test_a_resuming_stream_is_done_once_subscribed_and_caught_up() -> None:
    served = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            for part in FRAMES:
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(0.01)  # not a wait for anything: separate client reads
            await reader.read()  # until the client aborts
        finally:
            writer.close()
            served.set_result(None)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    try:
        _, stream = await loop.create_connection(
            lambda: ResumingStream(Recorder(), LF_CONNECTED, 0, 2, done.set), "127.0.0.1", port
        )
        assert stream.transport is not None
        stream.transport.write(b"GET / HTTP/1.1\r\n\r\n")
        async with asyncio.timeout(5):
            await done.wait()
        assert stream.received == 2
        assert stream.last_id == b"18-0"
        assert stream.done_at > 0
        stream.close()
        async with asyncio.timeout(5):
            await served
    finally:
        server.close()
        await server.wait_closed()


def _storm(rate: float) -> StormRun:
    return StormRun(10, 5, 10 / rate, rate, 1.0, 2.0, 0.5, 100.0, 0.3, 0.1, 10, 10, 0)


def test_the_goals_use_the_median_storm() -> None:
    ours = SystemRun("roomlogs", "roomlogs", 10, True, True, rss_per_stream_kib=1.0)
    ours.storms = [_storm(4000), _storm(6000), _storm(9000)]
    floor = SystemRun("minimal", "minimal", 10, False, False, rss_per_stream_kib=0.5)
    floor.storms = [_storm(12000)]
    text = markdown([ours, floor])
    assert "| roomlogs handshakes/s, auth + resume, one core | 6,000 | ≥ 5,000/s | yes |" in text
    assert "| roomlogs / minimal handshakes/s | 0.50 |" in text
    assert "| roomlogs KiB per idle stream | 1.00 | ≤ 1.2 KiB | yes |" in text
    assert "| roomlogs / nchan handshakes/s | n/a |" in text


def test_a_failed_system_is_a_row_of_n_a() -> None:
    failed = SystemRun("nchan", "nchan", 10, True, False)
    failed.notes.append("failed: it did not start")
    text = markdown([failed])
    assert "| nchan | 10 | no | yes | n/a | n/a | 0, **failed** (notes) | n/a |" in text
    assert "- nchan: failed: it did not start" in text


def test_a_system_that_failed_in_its_storm_keeps_what_was_measured_before() -> None:
    failed = SystemRun("nchan", "nchan", 10, True, False, connect_s=2.0, rss_per_stream_kib=9.9)
    failed.notes += ["failed: 7 of 10 streams failed", "nchan's worker crashed 3 times (x)"]
    text = markdown([failed])
    assert "| nchan | 10 | no | yes | 2.0 | 9.90 | 0, **failed** (notes) | n/a |" in text
    assert "- nchan: nchan's worker crashed 3 times (x)" in text
