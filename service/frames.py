"""Broker payload → `Message`, decoded once and encoded as an SSE frame once.

The same `frame` bytes go to every subscriber of the room (encode once, like centrifuge).
`data` is always one line of JSON: JSON text from a publisher may be pretty-printed, so a
payload with a raw CR or LF is re-serialised, and no payload can forge SSE fields.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

import orjson

from .ids import StreamKey, parse_id

# The service's own publish script prefixes the log with its stream id: {"id":"<id>",...}.
_ENVELOPE: Final = b'{"id":"'
_MAX_ID_LEN: Final = 41
MAX_CLOCK_SKEW_MS: Final = 3_600_000


class Message(NamedTuple):
    """One decoded log, immutable: the same object goes to every subscriber of the room.

    A NamedTuple rather than a frozen dataclass: it is built once per broker message, and a
    frozen dataclass's `__init__` (one `object.__setattr__` per field) costs twice as much.
    """

    room: str
    id: str | None
    key: StreamKey | None
    data: bytes
    level: str | None
    agent_type: str | None
    frame: bytes
    # The frame as one HTTP/1.1 chunk: what a direct write puts on an idle stream's socket.
    chunk: bytes


class Rejected(Exception):
    """A broker payload that is skipped; `reason` is the metrics label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def envelope(stream_id: str, data: bytes) -> bytes:
    """What the publish script sends: the log with its stream id put first (`data` is an object)."""
    return _ENVELOPE + stream_id.encode("ascii") + b'",' + data[1:]


def split_envelope(payload: bytes) -> tuple[str | None, StreamKey | None, bytes]:
    """Strip the `"id"` the publish script put first: (id, its key, the log). Foreign payloads
    come back unchanged, without id; the id is parsed here once per message."""
    if not payload.startswith(_ENVELOPE):
        return None, None, payload
    end = payload.find(b'",', len(_ENVELOPE), len(_ENVELOPE) + _MAX_ID_LEN + 2)
    if end < 0:
        return None, None, payload
    stream_id = payload[len(_ENVELOPE) : end].decode("ascii", "replace")
    key = parse_id(stream_id)
    if key is None:
        return None, None, payload
    return stream_id, key, b"{" + payload[end + 2 :]


def decode(room: str, payload: bytes, max_bytes: int) -> Message:
    """Turn one channel payload into a `Message`, or raise `Rejected` with the reason."""
    if len(payload) > max_bytes:
        raise Rejected("too_large")
    stream_id, key, body = split_envelope(payload)
    if key is not None and key[0] > time.time() * 1000 + MAX_CLOCK_SKEW_MS:
        # Ids come from Redis' clock; one far ahead is forged, and would make the hub's
        # per-room ordering drop every real log after it.
        raise Rejected("bad_id")
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Rejected("invalid_json") from None
    if type(obj) is not dict:
        raise Rejected("not_an_object")
    return message_from_log(room, stream_id, obj, body, key)


def message_from_log(
    room: str,
    stream_id: str | None,
    log: dict[str, Any],
    body: bytes | None = None,
    key: StreamKey | None = None,
) -> Message:
    """Build the message of a decoded log; `body` is reused as `data` when it is already fit.

    `key` is `stream_id`'s, when the caller has parsed it already.
    """
    if "timestamp" not in log:
        log["timestamp"] = utc_now_iso()
        body = None
    if body is None or b"\n" in body or b"\r" in body:
        body = orjson.dumps(log)
    if key is None and stream_id is not None:
        key = parse_id(stream_id)
    level = log.get("level")
    agent = log.get("agentType")
    frame = log_frame(stream_id, body)
    return Message(
        room=room,
        id=stream_id,
        key=key,
        data=body,
        level=level if type(level) is str else None,
        agent_type=agent if type(agent) is str else None,
        frame=frame,
        chunk=b"%x\r\n%b\r\n" % (len(frame), frame),
    )


def log_frame(stream_id: str | None, data: bytes) -> bytes:
    if stream_id is None:
        return b"event: log\ndata: " + data + b"\n\n"
    return b"id: " + stream_id.encode("ascii") + b"\nevent: log\ndata: " + data + b"\n\n"


def event_frame(event: str, payload: dict[str, Any], retry_ms: int | None = None) -> bytes:
    """A control event (`connected`, `heartbeat`, `gap`, `unavailable`)."""
    head = b"retry: %d\n" % retry_ms if retry_ms is not None else b""
    return head + b"event: " + event.encode("ascii") + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def heartbeat_frame() -> bytes:
    return event_frame("heartbeat", {"timestamp": utc_now_iso()})
