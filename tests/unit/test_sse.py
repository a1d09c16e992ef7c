"""sse: the one Python SSE parser follows the WHATWG rules a browser's EventSource applies
(how frames parse back is checked where they are made: test_message, test_events)."""

from __future__ import annotations

from service.sse import Event
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
