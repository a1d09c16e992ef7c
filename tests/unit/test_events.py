"""events: the frames of the named events (connected, gap, log, heartbeat, unavailable)."""

from __future__ import annotations

import orjson

from service.events import EventName, event_frame, log_frame
from tests.support.sse import parse_sse


def test_event_frames_are_single_data_lines() -> None:
    frame = event_frame(EventName.GAP, {"after": "1-0", "resumedFrom": "5\n\n-0"}, retry_ms=1500)
    [event] = parse_sse(frame)
    assert frame.startswith(b"retry: 1500\n")
    assert event.event == "gap"
    assert event.data_lines == 1
    assert orjson.loads(event.data) == {"after": "1-0", "resumedFrom": "5\n\n-0"}


def test_log_frame_without_id_has_no_id_line() -> None:
    assert log_frame(None, b"{}") == b"event: log\ndata: {}\n\n"
    assert log_frame("1-2", b"{}") == b"id: 1-2\nevent: log\ndata: {}\n\n"
