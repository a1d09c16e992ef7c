"""The load generator's byte scanner: what it counts must be what a browser parses.

Every body here is also read by `service.sse` (the WHATWG parser), and the scan must count the
same logs, however the bytes are split across reads.
"""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from bench.publishers import owed
from bench.reader import (
    LF_CONNECTED,
    Framing,
    KeepingStream,
    Recorder,
    Stream,
    check_framing,
    dechunk,
    events_of,
)
from bench.systems.nchan import Nchan
from bench.systems.tutorial import Tutorial
from service import sse
from service.chunked import chunk

CRLF = Tutorial.framing
NCHAN = Nchan.framing
CHUNKED_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)
CLOSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.aborted


def log(seq: int, sent_at: float) -> bytes:
    return orjson.dumps({"level": "info", "message": f"m{seq}", "metadata": {"sentAt": sent_at}})


def frames(count: int, sep: bytes = b"\n", *, sent_at: float = 0.0) -> list[bytes]:
    """`count` log frames with ids, as roomlogs (LF) or sse-starlette (CRLF) write them."""
    return [
        b"id: 1-%d%sevent: log%sdata: %b%s%s" % (i, sep, sep, log(i, sent_at), sep, sep)
        for i in range(count)
    ]


def connected(sep: bytes = b"\n") -> bytes:
    return b"retry: 1000" + sep + b"event: connected" + sep + b'data: {"ok":true}' + sep + sep


def stream(framing: Framing = LF_CONNECTED, *, keep: bool = False) -> tuple[Stream, Recorder]:
    recorder = Recorder()
    kind = KeepingStream if keep else Stream
    s = kind(recorder, framing, room=0, sampled=True)
    s.connection_made(FakeTransport())
    return s, recorder


def feed(s: Stream, data: bytes, cuts: list[int]) -> None:
    """`data` in reads cut at `cuts`."""
    start = 0
    for cut in [*cuts, len(data)]:
        s.data_received(data[start:cut])
        start = cut


async def test_counts_logs_and_sees_the_connected_event() -> None:
    s, rec = stream()
    body = connected() + b"".join(frames(3))
    s.data_received(CLOSE_HEAD + body)
    assert s.connected.done()
    assert s.error is None
    assert s.received == rec.total == 3
    assert rec.reads == 1
    assert s.received == len([e for e in sse.parse(body) if e.event == "log"])


@pytest.mark.parametrize("sep", [b"\n", b"\r\n"])
async def test_a_frame_split_at_any_byte_is_counted_once(sep: bytes) -> None:
    body = connected(sep) + b"".join(frames(2, sep))
    data = CLOSE_HEAD + body
    framing = LF_CONNECTED if sep == b"\n" else CRLF
    for cut in range(1, len(data)):
        s, _ = stream(framing)
        feed(s, data, [cut])
        assert s.received == 2, cut
        assert s.connected.done(), cut
        assert s.error is None, cut


async def test_byte_at_a_time() -> None:
    s, _ = stream()
    data = CLOSE_HEAD + connected() + b"".join(frames(3))
    feed(s, data, list(range(1, len(data))))
    assert s.received == 3
    assert s.connected.done()


async def test_crlf_frames_are_not_counted_by_the_lf_framing() -> None:
    # Each system's own framing: sse-starlette's CRLF lines hold no "event: log\n".
    s, _ = stream(LF_CONNECTED)
    s.data_received(CLOSE_HEAD + connected(b"\r\n") + b"".join(frames(2, b"\r\n")))
    assert s.received == 0
    crlf, _ = stream(CRLF)
    crlf.data_received(CLOSE_HEAD + connected(b"\r\n") + b"".join(frames(2, b"\r\n")))
    assert crlf.received == 2


async def test_nchan_says_hi_when_subscribed() -> None:
    s, _ = stream(NCHAN)
    s.data_received(CHUNKED_HEAD + chunk(b": hi\n\n"))
    assert s.connected.done()
    assert s.error is None
    s.data_received(chunk(b"id: 1:0\nevent: log\ndata: " + log(0, 0.0) + b"\n\n"))
    assert s.received == 1


async def test_chunked_and_close_delimited_bodies_count_alike() -> None:
    body = [connected(), *frames(4)]
    close, _ = stream()
    close.data_received(CLOSE_HEAD + b"".join(body))
    chunked, _ = stream()
    # One chunk per write, as the systems write whole frames per chunk.
    chunked.data_received(CHUNKED_HEAD + chunk(body[0]) + chunk(b"".join(body[1:3])))
    chunked.data_received(chunk(body[3]) + chunk(body[4]))
    assert close.received == chunked.received == 4


async def test_a_refusal_before_connected_fails_the_stream() -> None:
    s, _ = stream()
    s.data_received(CLOSE_HEAD + b'retry: 5000\nevent: unavailable\ndata: {"reason":"x"}\n\n')
    assert s.error is not None
    assert s.error.startswith("refused")
    assert isinstance(s.transport, FakeTransport)
    assert s.transport.aborted


async def test_a_non_200_answer_fails_the_stream() -> None:
    s, _ = stream()
    s.data_received(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    assert s.error == "HTTP/1.1 403 Forbidden"


async def test_latency_is_read_on_sampled_streams_while_recording() -> None:
    s, rec = stream()
    s.data_received(CLOSE_HEAD + connected())
    sent = time.time() - 0.25
    s.data_received(b"".join(frames(2, sent_at=sent)))
    assert len(rec.latencies) == 0  # not recording
    rec.recording = True
    s.data_received(b"".join(frames(3, sent_at=sent)))
    assert len(rec.latencies) == 3
    assert all(0.2 < x < 5 for x in rec.latencies)


def test_dechunk_stops_at_the_last_complete_chunk() -> None:
    data = chunk(b"abc") + chunk(b"defg") + b"5\r\nhi"
    assert dechunk(data) == b"abcdefg"
    assert dechunk(chunk(b"abc") + b"0\r\n\r\n") == b"abc"


async def test_check_framing_agrees_with_service_sse() -> None:
    s, _ = stream(keep=True)
    body = [connected(), *frames(3)]
    s.data_received(CHUNKED_HEAD + b"".join(chunk(f) for f in body))
    assert isinstance(s, KeepingStream)
    check_framing(s, "roomlogs")
    assert [e.event for e in events_of(bytes(s.raw))] == ["connected", "log", "log", "log"]


async def test_check_framing_fails_when_the_scan_miscounts() -> None:
    # A frame the scan counts (the marker is there) that a browser does not dispatch: no data.
    s, _ = stream(keep=True)
    s.data_received(CLOSE_HEAD + connected() + b"event: log\n\n")
    assert s.received == 1
    assert isinstance(s, KeepingStream)
    with pytest.raises(RuntimeError, match="byte scan counted 1"):
        check_framing(s, "roomlogs")


def test_rooms_are_owed_their_round_robin_share() -> None:
    assert owed(7, 3) == [3, 2, 2]
    assert owed(2, 3) == [1, 1, 0]
    assert sum(owed(1001, 1000)) == 1001
