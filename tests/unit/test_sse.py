"""sse: the one Python SSE parser follows the WHATWG rules a browser's EventSource applies
(how frames parse back is checked where they are made: test_message, test_events)."""

from __future__ import annotations

from service.sse import Event, Parser, parse
from tests.support.sse import parse_sse


def test_the_parser_follows_the_whatwg_rules() -> None:
    stream = (
        b"\xef\xbb\xbfretry: 10\r\n: comment\r\nevent: a\rdata: 1\ndata:2\r\nid: 7-1\n\n"
        b"data\n\n"
        b"id: x\x00y\nevent: b\ndata: 3\n\n"
        b"data: incomplete"
    )
    events = parse_sse(stream)
    assert events == [
        Event("a", "1\n2", id="7-1", retry=10, last_event_id="7-1", data_lines=2),
        Event("message", "", last_event_id="7-1", data_lines=1),
        Event("b", "3", last_event_id="7-1", data_lines=1),
    ]


STREAM = (
    b"\xef\xbb\xbfretry: 10\r\n: comment\r\nevent: a\rdata: 1\ndata:2\r\nid: 7-1\n\n"
    b"data\n\nid: x\x00y\nevent: b\ndata: 3\r\rdata: incomplete"
)


def test_the_events_do_not_depend_on_how_the_stream_is_split_into_reads() -> None:
    """Every way of cutting the stream in three reads, CR/LF pairs and the BOM included."""
    whole = parse(STREAM)
    assert [e.event for e in whole] == ["a", "message", "b"]
    for i in range(len(STREAM) + 1):
        for j in range(i, len(STREAM) + 1):
            parser = Parser()
            got = parser.feed(STREAM[:i]) + parser.feed(STREAM[i:j]) + parser.feed(STREAM[j:])
            assert got == whole, (i, j)


def test_a_long_line_in_small_reads_is_looked_through_once() -> None:
    """Line ends are searched in each new read only: a 1 MB line in 1 KB reads keeps its
    pieces until the end comes, instead of scanning what it already holds again."""
    line = b"data: " + b"x" * (1 << 20) + b"\n\n"
    parser = Parser()
    events = []
    for start in range(0, len(line), 1024):
        events += parser.feed(line[start : start + 1024])
        assert len(parser._partial) <= start // 1024 + 1  # pieces kept, never joined early
    assert [len(e.data) for e in events] == [1 << 20]
