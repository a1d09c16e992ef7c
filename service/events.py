"""The events a stream carries, named once, and the frames they are sent as.

A new event is one name here plus the function that builds its frame; clients (the viewer,
`roomlogs tail`, the bench) read the same names.
"""

from __future__ import annotations

import enum
from typing import Any

import orjson

from . import sse
from .logs import utc_now_iso


class EventName(enum.StrEnum):
    CONNECTED = "connected"  # first, after `retry:`: the stream is registered
    GAP = "gap"  # logs after the client's position are no longer held
    LOG = "log"  # one log, with its stream id
    HEARTBEAT = "heartbeat"  # every HEARTBEAT_INTERVAL: the stream is alive
    UNAVAILABLE = "unavailable"  # the stream cannot be served now: come back later


LOG_HEAD = b"event: " + EventName.LOG.encode() + b"\ndata: "
_LOG_MID = b"\n" + LOG_HEAD


def log_frame(stream_id: str | None, data: bytes) -> bytes:
    """Once per message on the hot path: built by hand, not through `sse.encode`."""
    if stream_id is None:
        return LOG_HEAD + data + b"\n\n"
    return b"id: " + stream_id.encode("ascii") + b"\n" + LOG_HEAD + data + b"\n\n"


def cursor_log_frame(cursor: bytes, data: bytes) -> bytes:
    """A log of a multi-room stream: its `id:` is the stream's cursor (ASCII already)."""
    return b"".join((b"id: ", cursor, _LOG_MID, data, b"\n\n"))


def event_frame(name: EventName, payload: dict[str, Any], retry_ms: int | None = None) -> bytes:
    return sse.encode(name.value, orjson.dumps(payload), retry=retry_ms)


def connected_frame(payload: dict[str, Any], retry_ms: int) -> bytes:
    return event_frame(EventName.CONNECTED, payload, retry_ms)


def gap_frame(after: str | None, resumed_from: str | None, room: str | None = None) -> bytes:
    """`room` is named on a multi-room stream (first, as in its logs)."""
    if room is not None:
        return event_frame(
            EventName.GAP, {"roomId": room, "after": after, "resumedFrom": resumed_from}
        )
    return event_frame(EventName.GAP, {"after": after, "resumedFrom": resumed_from})


def heartbeat_frame() -> bytes:
    return event_frame(EventName.HEARTBEAT, {"timestamp": utc_now_iso()})


def unavailable_frame(reason: str, retry_ms: int) -> bytes:
    return event_frame(EventName.UNAVAILABLE, {"reason": reason, "retryMs": retry_ms}, retry_ms)
