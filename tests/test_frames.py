"""frames (decode once, encode the SSE frame once), room ids and stream ids.

The property tests run the publish path (`logs.normalize` → `orjson.dumps` → `frames.envelope`,
what the publish script puts on the channel → `frames.decode`) and read the frame back with a
WHATWG-style EventSource parser written here, so no log content can forge SSE fields.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from service.broker.keys import PLAIN, TAGGED, room_from_channel
from service.broker.script import envelope, split_envelope
from service.events import EventName, event_frame, log_frame
from service.ids import format_id, parse_id
from service.logs import LEVELS, normalize
from service.message import Message, Rejected, decode
from service.rooms import is_valid_room_id
from service.sse import Event, parse

MAX = 65536
TS = "2026-01-01T00:00:00.000Z"


def sample(**extra: Any) -> dict[str, Any]:
    return {
        "timestamp": TS,
        "agentType": "story",
        "level": "info",
        "message": "hello",
        "metadata": {"step": 1},
        **extra,
    }


def parse_sse(stream: bytes) -> list[Event]:
    """Events as a browser dispatches them; strict UTF-8: a frame must be valid UTF-8."""
    return parse(stream, errors="strict")


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


def frame_of_published(stream_id: str, log: Any) -> tuple[dict[str, Any], Message]:
    """The publish path: what the HTTP handler stores, then what the reader decodes."""
    normalized = normalize(log)
    data = orjson.dumps(normalized)
    return normalized, decode("room-1", envelope(stream_id, data), 16 << 20)


# -- decode() -----------------------------------------------------------------------------


def test_decode_splits_the_envelope_into_id_and_log() -> None:
    log = sample()
    data = orjson.dumps(log)
    payload = envelope("1700000000000-3", data)
    assert payload == b'{"id":"1700000000000-3",' + data[1:]
    msg = decode("room-1", payload, MAX)
    assert msg.room == "room-1"
    assert msg.id == "1700000000000-3"
    assert msg.key == (1700000000000, 3)
    assert msg.data == data  # the log without its id, byte for byte
    assert orjson.loads(msg.data) == log
    assert msg.level == "info"
    assert msg.agent_type == "story"
    assert msg.frame == b"id: 1700000000000-3\nevent: log\ndata: " + data + b"\n\n"


def test_decode_foreign_payload_has_no_id() -> None:
    payload = orjson.dumps(sample(level="warn", agentType="code"))
    msg = decode("room-1", payload, MAX)
    assert msg.id is None
    assert msg.key is None
    assert msg.data == payload
    assert msg.level == "warn"
    assert msg.agent_type == "code"
    assert msg.frame == b"event: log\ndata: " + payload + b"\n\n"


def test_decode_keeps_an_id_field_that_is_not_a_stream_id() -> None:
    payload = b'{"id":"job-42","message":"x","timestamp":"' + TS.encode() + b'"}'
    msg = decode("room-1", payload, MAX)
    assert msg.id is None
    assert orjson.loads(msg.data)["id"] == "job-42"


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_decode_reserialises_pretty_printed_json_on_one_line(newline: str) -> None:
    log = sample(metadata={"nested": {"list": [1, 2, {"deep": "a\nb"}]}})
    payload = json.dumps(log, indent=2).replace("\n", newline).encode()
    assert newline.encode() in payload
    msg = decode("room-1", payload, MAX)
    assert b"\n" not in msg.data
    assert b"\r" not in msg.data
    assert orjson.loads(msg.data) == log
    [event] = parse_sse(msg.frame)
    assert event.data_lines == 1
    assert orjson.loads(event.data) == log


def test_decode_fills_a_missing_timestamp() -> None:
    log = sample()
    del log["timestamp"]
    before = datetime.now(UTC)
    for stream_id, payload in [
        (None, orjson.dumps(log)),
        ("1700000000000-0", envelope("1700000000000-0", orjson.dumps(log))),
    ]:
        msg = decode("room-1", payload, MAX)
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
    log = sample(traceId="abc", extra={"k": [1, None, True]})
    msg = decode("room-1", orjson.dumps(log), MAX)
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
        decode("room-1", payload, 256)
    assert info.value.reason == reason
    assert str(info.value) == reason


def test_decode_accepts_a_payload_of_exactly_the_limit() -> None:
    payload = b'{"message":"' + b"x" * 100 + b'"}'
    payload = payload.replace(b"x" * 100, b"x" * (100 + 256 - len(payload)))
    assert len(payload) == 256
    assert orjson.loads(decode("room-1", payload, 256).data)["message"] == "x" * 242
    with pytest.raises(Rejected, match="too_large"):
        decode("room-1", payload + b" ", 256)


def test_log_content_cannot_forge_sse_fields() -> None:
    hostile = "x\n\nevent: evil\ndata: pwned\nid: 9-9\r\n\r\nretry: 1\r: c\n"
    normalized, msg = frame_of_published("1700000000000-1", sample(message=hostile))
    events = parse_sse(msg.frame)
    assert len(events) == 1
    [event] = events
    assert event.event == "log"
    assert event.last_event_id == "1700000000000-1"
    assert event.data_lines == 1
    assert orjson.loads(event.data) == normalized


def test_event_frames_are_single_data_lines() -> None:
    frame = event_frame(EventName.GAP, {"after": "1-0", "resumedFrom": "5\n\n-0"}, retry_ms=1500)
    [event] = parse_sse(frame)
    assert frame.startswith(b"retry: 1500\n")
    assert event.event == "gap"
    assert event.data_lines == 1
    assert orjson.loads(event.data) == {"after": "1-0", "resumedFrom": "5\n\n-0"}


# -- properties of the publish path -------------------------------------------------------

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
@example(log=sample(message="\r\n\r\ndata: x\r\n"), stream_id="0-0")
@example(log=sample(message="\x00" * 10_000, metadata={"a": {"b": {"c": ["\n"]}}}), stream_id="1-2")
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
        payload = envelope(stream_id, data) if stream_id else data
        msg = decode("room-1", payload, 16 << 20)
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
    msg = decode("room-1", payload, 16 << 20)
    assert msg.id is None
    [event] = parse_sse(msg.frame)
    assert event.data_lines == 1
    assert event.last_event_id == ""
    got = orjson.loads(event.data)
    assert "timestamp" in got
    if "timestamp" not in obj:
        del got["timestamp"]
    assert got == obj


def test_log_frame_without_id_has_no_id_line() -> None:
    assert log_frame(None, b"{}") == b"event: log\ndata: {}\n\n"
    assert log_frame("1-2", b"{}") == b"id: 1-2\nevent: log\ndata: {}\n\n"


@pytest.mark.parametrize(
    "stream_id",
    ["1234567890123456789-12345678901234567890", "18446744073709551615-18446744073709551615"],
)
def test_envelope_split_handles_the_longest_stream_ids(stream_id: str) -> None:
    got_id, _, body = split_envelope(envelope(stream_id, orjson.dumps(sample())))
    assert got_id == stream_id
    assert orjson.loads(body) == sample()


# -- room ids -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "room",
    [
        "a",
        "0",
        "test-room-1234567890",
        "550e8400-e29b-41d4-a716-446655440000",
        "Story.Room_2-x",
        "a" * 128,
        "a...",
        "9_",
    ],
)
def test_valid_room_ids(room: str) -> None:
    assert is_valid_room_id(room)
    assert PLAIN.channel(room) == f"room:{room}:logs"
    assert PLAIN.history(room) == f"room:{room}:history"
    assert PLAIN.room(room) == f"room:{room}"
    assert room_from_channel(PLAIN.channel(room).encode()) == room


@pytest.mark.parametrize(
    "room",
    [
        "",
        "a" * 129,
        "-a",
        ".a",
        "_a",
        "a b",
        "a:b",
        "a/b",
        "a*",
        "a?",
        "a\n",
        "\na",
        "é",
        "\uff41",  # fullwidth letter a
        "a\x00",
        "{a}",
    ],
)
def test_invalid_room_ids_never_become_keys(room: str) -> None:
    assert not is_valid_room_id(room)
    for keys in (PLAIN, TAGGED):
        for build in (keys.channel, keys.history, keys.room):
            with pytest.raises(ValueError, match="invalid room id"):
                build(room)


@pytest.mark.parametrize(
    ("name", "room"),
    [
        (b"room:abc:logs", "abc"),
        (b"room:test-room-1:logs", "test-room-1"),
        (b"room:a:b:logs", None),
        (b"room::logs", None),
        (b"room:-a:logs", None),
        (b"room:a b:logs", None),
        (b"rooms:a:logs", None),
        (b"room:a:logs:x", None),
        (b"room:a:history", None),
        (b"room:\xc3\xa9:logs", None),
        (b"room:\xff:logs", None),
        (b"room:" + b"a" * 129 + b":logs", None),
        (b"room:logs", None),
    ],
)
def test_room_from_channel(name: bytes, room: str | None) -> None:
    assert room_from_channel(name) == room


@given(st.text(max_size=140))
def test_room_from_channel_agrees_with_is_valid_room_id(room: str) -> None:
    name = f"room:{room}:logs".encode()
    assert room_from_channel(name) == (room if is_valid_room_id(room) else None)


# -- stream ids ---------------------------------------------------------------------------


@given(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)))
def test_format_and_parse_id_round_trip(key: tuple[int, int]) -> None:
    text = format_id(key)
    assert re.fullmatch(r"[0-9]+-[0-9]+", text)
    assert parse_id(text) == key
    assert format_id(parse_id(text) or (-1, -1)) == text


@given(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)), st.data())
def test_parse_id_orders_like_redis(key: tuple[int, int], data: st.DataObject) -> None:
    other = data.draw(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)))
    a, b = parse_id(format_id(key)), parse_id(format_id(other))
    assert a is not None
    assert b is not None
    assert (a < b) == (key < other)


@pytest.mark.parametrize(
    "text", ["", "1", "1-", "-1", "a-b", "1-2-3", " 1-2", "1-2 ", "1-2\n", "1_2", "+1-2", "1-*"]
)
def test_parse_id_rejects_what_is_not_a_stream_id(text: str) -> None:
    assert parse_id(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "\u0661\u0667\u0660\u0660-\u0660",  # Arabic-Indic digits: int() reads them, Redis does not
        "\uff11-\uff12",  # fullwidth digits
        "18446744073709551616-0",  # 2**64: past Redis' 64-bit ms
        "0-99999999999999999999",
    ],
)
def test_parse_id_rejects_ids_redis_would_refuse(text: str) -> None:
    assert parse_id(text) is None


@given(st.one_of(st.text(max_size=50), st.from_regex(r"[0-9]{1,22}-[0-9]{1,22}", fullmatch=True)))
def test_parse_id_agrees_with_the_shape_redis_accepts(text: str) -> None:
    """`<ms>-<seq>`, ASCII digits, each part a 64-bit unsigned number (Redis' own rule)."""
    m = re.fullmatch(r"([0-9]{1,20})-([0-9]{1,20})", text)
    key = (int(m[1]), int(m[2])) if m else None
    expected = key if key is not None and max(key) < 2**64 else None
    assert parse_id(text) == expected


def test_an_envelope_id_far_in_the_future_is_rejected_as_forged() -> None:
    future = f"{int(time.time() * 1000) + 2 * 3_600_000}-0"
    with pytest.raises(Rejected) as info:
        decode("room-1", envelope(future, b'{"message":"x","timestamp":"t"}'), 65536)
    assert info.value.reason == "bad_id"
    now = f"{int(time.time() * 1000)}-0"
    assert decode("room-1", envelope(now, b'{"message":"x","timestamp":"t"}'), 65536).id == now
