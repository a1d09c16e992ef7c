"""message: a broker payload decoded once into a `Message` whose SSE frame is made once.

The property tests run the publish path (`logs.normalize` → `orjson.dumps` →
`Envelopes.wrap`, what the publish script puts on the channel → `message.decode_envelope`) and read
the frame back with the package's WHATWG parser (`tests.support.sse.parse_sse`), so no log
content can forge SSE fields.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from service.broker.envelope import Envelopes, is_envelope
from service.ids import format_id, parse_id
from service.logs import LEVELS, normalize
from service.message import Message, Rejected, decode, decode_envelope
from tests.support.factories import sample_log
from tests.support.sse import parse_sse

MAX = 65536
TS = "2026-01-01T00:00:00.000Z"
ENV = Envelopes(b"the secret")


def _decode(payload: bytes, max_bytes: int) -> Message:
    """What the delivery step does with a channel payload (no id: a plain PUBLISH's)."""
    if is_envelope(payload):
        return decode_envelope("room-1", payload, max_bytes, ENV)
    return decode("room-1", payload, max_bytes)


def frame_of_published(stream_id: str, log: Any) -> tuple[dict[str, Any], Message]:
    """The publish path: what the HTTP handler stores, then what the reader decodes."""
    normalized = normalize(log)
    data = orjson.dumps(normalized)
    return normalized, _decode(ENV.wrap(stream_id, data), 16 << 20)


# -- decode() --------------------------------------------------------------------------------------


def test_decode_splits_the_envelope_into_id_and_log() -> None:
    log = sample_log(0)
    data = orjson.dumps(log)
    payload = ENV.wrap("1700000000000-3", data)
    tag = ENV.tag("1700000000000-3", data)
    assert payload == b'{"id":"1700000000000-3","rlmac":"' + tag + b'",' + data[1:]
    msg = _decode(payload, MAX)
    assert msg.room == "room-1"
    assert msg.id == "1700000000000-3"
    assert msg.key == (1700000000000, 3)
    assert msg.data == data  # the log without its id, byte for byte
    assert orjson.loads(msg.data) == log
    assert msg.level == "info"
    assert msg.agent_type == "story"
    assert msg.frame == b"id: 1700000000000-3\nevent: log\ndata: " + data + b"\n\n"


def test_decode_foreign_payload_has_no_id() -> None:
    payload = orjson.dumps(sample_log(0, level="warn", agentType="code"))
    msg = _decode(payload, MAX)
    assert msg.id is None
    assert msg.key is None
    assert msg.data == payload
    assert msg.level == "warn"
    assert msg.agent_type == "code"
    assert msg.frame == b"event: log\ndata: " + payload + b"\n\n"


def test_decode_keeps_an_id_field_that_is_not_a_stream_id() -> None:
    payload = b'{"id":"job-42","message":"x","timestamp":"' + TS.encode() + b'"}'
    msg = _decode(payload, MAX)
    assert msg.id is None
    assert orjson.loads(msg.data)["id"] == "job-42"


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_decode_reserialises_pretty_printed_json_on_one_line(newline: str) -> None:
    log = sample_log(0, metadata={"nested": {"list": [1, 2, {"deep": "a\nb"}]}})
    payload = json.dumps(log, indent=2).replace("\n", newline).encode()
    assert newline.encode() in payload
    msg = _decode(payload, MAX)
    assert b"\n" not in msg.data
    assert b"\r" not in msg.data
    assert orjson.loads(msg.data) == log
    [event] = parse_sse(msg.frame)
    assert event.data_lines == 1
    assert orjson.loads(event.data) == log


def test_decode_fills_a_missing_timestamp() -> None:
    log = sample_log(0)
    del log["timestamp"]
    before = datetime.now(UTC)
    for stream_id, payload in [
        (None, orjson.dumps(log)),
        ("1700000000000-0", ENV.wrap("1700000000000-0", orjson.dumps(log))),
    ]:
        msg = _decode(payload, MAX)
        assert msg.id == stream_id
        got = orjson.loads(msg.data)
        stamp = got.pop("timestamp")
        assert got == log
        assert stamp.endswith("Z")
        when = datetime.fromisoformat(stamp)
        assert when.tzinfo is not None
        assert before - timedelta(seconds=1) <= when <= datetime.now(UTC) + timedelta(seconds=1)
        [event] = parse_sse(msg.frame)
        assert orjson.loads(event.data)["timestamp"] == stamp


def test_decode_keeps_unknown_fields() -> None:
    log = sample_log(0, traceId="abc", extra={"k": [1, None, True]})
    msg = _decode(orjson.dumps(log), MAX)
    assert orjson.loads(msg.data) == log


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "invalid_json"),
        (b"", "invalid_json"),
        (b'{"message": ', "invalid_json"),
        (b'{"message": "\xff\xfe"}', "invalid_json"),
        (b'{"id":"1700000000000-0",oops}', "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (b'[{"message": "x"}]', "not_an_object"),
        (b'"a string"', "not_an_object"),
        (b"42", "not_an_object"),
        (b"null", "not_an_object"),
        (b'{"message": "' + b"x" * 300 + b'"}', "too_large"),
        (b"x" * 257, "too_large"),
    ],
)
def test_decode_rejects_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(Rejected) as info:
        _decode(payload, 256)
    assert info.value.reason == reason
    assert str(info.value) == reason


def test_decode_accepts_a_payload_of_exactly_the_limit() -> None:
    payload = b'{"message":"' + b"x" * 100 + b'"}'
    payload = payload.replace(b"x" * 100, b"x" * (100 + 256 - len(payload)))
    assert len(payload) == 256
    assert orjson.loads(_decode(payload, 256).data)["message"] == "x" * 242
    with pytest.raises(Rejected, match="too_large"):
        _decode(payload + b" ", 256)


def test_an_envelope_id_far_in_the_future_is_rejected() -> None:
    future = f"{int(time.time() * 1000) + 2 * 3_600_000}-0"
    with pytest.raises(Rejected) as info:
        _decode(ENV.wrap(future, b'{"message":"x","timestamp":"t"}'), 65536)
    assert info.value.reason == "bad_id"
    now = f"{int(time.time() * 1000)}-0"
    assert _decode(ENV.wrap(now, b'{"message":"x","timestamp":"t"}'), 65536).id == now


def test_log_content_cannot_forge_sse_fields() -> None:
    hostile = "x\n\nevent: evil\ndata: pwned\nid: 9-9\r\n\r\nretry: 1\r: c\n"
    normalized, msg = frame_of_published("1700000000000-1", sample_log(0, message=hostile))
    events = parse_sse(msg.frame)
    assert len(events) == 1
    [event] = events
    assert event.event == "log"
    assert event.last_event_id == "1700000000000-1"
    assert event.data_lines == 1
    assert orjson.loads(event.data) == normalized


# -- properties of the publish path ----------------------------------------------------------------


TRICKY = [
    "\n",
    "\r",
    "\r\n",
    "\n\n",
    "\r\r",
    "data: forged",
    "event: evil",
    "id: 1-1",
    "retry: 1",
    ": comment",
    '"',
    "\\",
    '\\"',
    "\x00",
    "\x1b[31m",
    "\t",
    "\x0b\x0c",
    "\u2028\u2029",
    "\x85",
    "\ufeff",
    "é漢字🙂",
    "\U0010ffff",
    "{",
    "}",
    '","id":"1-1',
]


texts = st.lists(st.one_of(st.text(), st.sampled_from(TRICKY)), max_size=8).map("".join)


long_texts = st.builds(
    lambda part, n: part * n, st.sampled_from([*TRICKY, "ab"]), st.integers(1000, 20000)
)


any_text = st.one_of(texts, long_texts)


keys = st.one_of(st.text(max_size=10), st.sampled_from(TRICKY))


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    any_text,
)


json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)


RESERVED = {"id", "timestamp", "agentType", "level", "message", "metadata"}


# Ids up to now: decode() rejects ids from the far future as forged.
stream_ids = st.tuples(st.integers(0, int(time.time() * 1000)), st.integers(0, 2**32)).map(
    format_id
)


@st.composite
def published_logs(draw: st.DrawFn) -> dict[str, Any]:
    log: dict[str, Any] = {
        "agentType": draw(st.text(min_size=1, max_size=128)),
        "level": draw(st.sampled_from(LEVELS)),
        "message": draw(any_text),
        "metadata": draw(st.dictionaries(keys, json_values, max_size=5)),
    }
    if draw(st.booleans()):
        when = draw(st.datetimes(timezones=st.just(UTC)))
        log["timestamp"] = when.isoformat()
    extra = draw(st.dictionaries(keys.filter(lambda k: k not in RESERVED), json_values, max_size=3))
    log.update(extra)
    return log


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(log=published_logs(), stream_id=stream_ids)
@example(log=sample_log(0, message="\r\n\r\ndata: x\r\n"), stream_id="0-0")
@example(
    log=sample_log(0, message="\x00" * 10_000, metadata={"a": {"b": {"c": ["\n"]}}}),
    stream_id="1-2",
)
def test_published_log_frame_parses_back_to_the_same_log_and_id(
    log: dict[str, Any], stream_id: str
) -> None:
    normalized, msg = frame_of_published(stream_id, log)
    assert msg.id == stream_id
    assert msg.key == parse_id(stream_id)
    assert msg.frame.count(b"\ndata: ") == 1
    assert msg.frame.endswith(b"\n\n")
    events = parse_sse(msg.frame)
    assert len(events) == 1
    [event] = events
    assert event.event == "log"
    assert event.last_event_id == stream_id
    assert event.data_lines == 1
    assert orjson.loads(event.data) == normalized
    assert "id" not in orjson.loads(event.data)


@PROPERTY
@given(logs=st.lists(st.tuples(published_logs(), st.booleans()), min_size=1, max_size=5))
def test_coalesced_frames_parse_back_to_every_log_in_order(
    logs: list[tuple[dict[str, Any], bool]],
) -> None:
    """What the stream handler writes at once: many frames joined, with and without ids."""
    expected: list[tuple[dict[str, Any], str | None]] = []
    frames: list[bytes] = []
    for seq, (log, has_id) in enumerate(logs):
        stream_id = f"1700000000000-{seq}" if has_id else None
        data = orjson.dumps(normalize(log))
        payload = ENV.wrap(stream_id, data) if stream_id else data
        msg = _decode(payload, 16 << 20)
        frames.append(msg.frame)
        expected.append((orjson.loads(data), stream_id))
    events = parse_sse(b"".join(frames))
    assert [orjson.loads(e.data) for e in events] == [log for log, _ in expected]
    assert all(e.data_lines == 1 and e.event == "log" for e in events)
    for event, (_, stream_id) in zip(events, expected, strict=True):
        if stream_id is not None:
            assert event.last_event_id == stream_id


@PROPERTY
@given(
    obj=st.dictionaries(keys.filter(lambda k: k != "id"), json_values, max_size=6),
    indent=st.sampled_from([None, 0, 2, "\t"]),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
)
def test_foreign_payload_of_any_shape_is_one_data_line(
    obj: dict[str, Any], indent: int | str | None, newline: str
) -> None:
    """A plain PUBLISH from another service, pretty-printed or not, becomes one data line."""
    payload = json.dumps(obj, indent=indent, ensure_ascii=False).replace("\n", newline).encode()
    msg = _decode(payload, 16 << 20)
    assert msg.id is None
    [event] = parse_sse(msg.frame)
    assert event.data_lines == 1
    assert event.last_event_id == ""
    got = orjson.loads(event.data)
    assert "timestamp" in got
    if "timestamp" not in obj:
        del got["timestamp"]
    assert got == obj
