"""Broker payload → `Message`, decoded once, its SSE frame encoded once.

The same `frame` bytes go to every subscriber of the room (encode once, like centrifuge).
`data` is always one line of JSON: JSON text from a publisher may be pretty-printed, so a
payload with a raw CR or LF is re-serialised, and no payload can forge SSE fields.
"""

from __future__ import annotations

import time
from typing import Any, Final, NamedTuple

import orjson

from .broker.envelope import Envelopes, split_envelope
from .chunked import chunk
from .events import gap_frame, log_frame
from .ids import StreamKey, parse_id
from .logs import too_deep, utc_now_iso

MAX_CLOCK_SKEW_MS: Final = 3_600_000


class Message(NamedTuple):
    """One decoded log, immutable: the same object goes to every subscriber of the room.

    A NamedTuple rather than a frozen dataclass: it is built once per broker message, and a
    frozen dataclass's `__init__` (one `object.__setattr__` per field) costs twice as much.
    """

    room: str
    id: str | None
    key: StreamKey | None
    data: bytes  # the log's one-line JSON; empty for a stream event (a gap): it passes filters
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


def decode(
    room: str,
    payload: bytes,
    max_bytes: int,
    *,
    stream_id: str | None = None,
    key: StreamKey | None = None,
) -> Message:
    """Turn one log into a `Message`, or raise `Rejected` with the reason: a stored log with
    its id (and `key`, when parsed already), or a plain PUBLISH's payload (no id yet)."""
    if len(payload) > max_bytes:
        raise Rejected("too_large")
    if key is not None and key[0] > time.time() * 1000 + MAX_CLOCK_SKEW_MS:
        # Ids come from Redis' clock; one far ahead would make the per-room ordering drop
        # every real log after it.
        raise Rejected("bad_id")
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise Rejected("invalid_json") from None
    if type(obj) is not dict:
        raise Rejected("not_an_object")
    if too_deep(obj, payload):
        raise Rejected("too_deep")  # and orjson could not encode it again
    return message_from_log(room, stream_id, obj, payload, key)


def decode_envelope(room: str, payload: bytes, max_bytes: int, envelopes: Envelopes) -> Message:
    """The `Message` of a publish script's envelope (`envelope.is_envelope`), whose tag must
    be the service's: anything else is refused as forged."""
    parts = split_envelope(payload)
    if parts is None:
        raise Rejected("bad_envelope")
    stream_id, key, tag, body = parts
    if len(body) > max_bytes:
        raise Rejected("too_large")
    if not envelopes.verify(stream_id, body, tag):
        raise Rejected("forged")
    return decode(room, body, max_bytes, stream_id=stream_id, key=key)


def message_from_log(
    room: str,
    stream_id: str | None,
    log: dict[str, Any],
    body: bytes | None,
    key: StreamKey | None,
) -> Message:
    """Build the message of a decoded log; `body` (the JSON `log` came from) is sent as it is.

    It is never encoded again, so its integers stay exact (orjson would turn those beyond 64
    bits into floats) and no nesting can make the encoder fail: a raw CR or LF can only be
    whitespace in valid JSON and becomes a space, a missing `timestamp` is spliced in first.
    `key` is `stream_id`'s, when the caller has parsed it already.
    """
    if body is None:
        if "timestamp" not in log:
            log["timestamp"] = utc_now_iso()
        body = orjson.dumps(log)
    else:
        if b"\n" in body or b"\r" in body:
            body = body.replace(b"\r", b" ").replace(b"\n", b" ")
        if "timestamp" not in log:
            log["timestamp"] = stamp = utc_now_iso()
            body = _with_first(b'"timestamp":"' + stamp.encode("ascii") + b'"', body)
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
        chunk=chunk(frame),
    )


def _with_first(member: bytes, obj: bytes) -> bytes:
    """`obj` (the bytes of a JSON object) with `member` (`"name":value`) as its first member."""
    rest = obj.lstrip()[1:].lstrip()  # after the opening brace
    return b"{" + member + (b"}" if rest.startswith(b"}") else b"," + rest)


def gap_message(room: str, after: str | None, resumed_from: str | None) -> Message:
    """The in-band `gap` for `room`'s streams: logs after `after` were trimmed unsent, and
    what follows resumes at `resumed_from`. Queued like a log, so it lands in order."""
    frame = gap_frame(after, resumed_from)
    return Message(room, None, None, b"", None, None, frame, chunk(frame))
