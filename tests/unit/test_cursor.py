"""The multi-room cursor: compact, round-trips every position, refuses what is not one."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.cursor import Cursor, CursorError, parse
from service.roomtag import with_room, without_room_id

EPOCH = 1_764_000_000_000
REACH = (1 << 35) - 1
SEQ_MAX = (1 << 18) - 1
keys = st.one_of(
    st.just((0, 0)),
    st.tuples(st.integers(EPOCH - REACH, EPOCH + REACH - 1), st.integers(0, SEQ_MAX)),
)


@given(st.dictionaries(st.sampled_from([f"room-{i}" for i in range(8)]), keys, min_size=1))
def test_every_position_round_trips(positions: dict[str, tuple[int, int]]) -> None:
    cursor = Cursor(positions, epoch_ms=EPOCH)
    for room, key in positions.items():
        cursor.advance(room, key)
    assert parse(cursor.encode().decode(), positions) == positions


def test_what_it_cannot_hold_is_clamped_where_nothing_is_lost() -> None:
    """Older than ~398 days (beyond HISTORY_TTL's 365-day cap: nothing is retained there)
    becomes the earliest position it holds; a millisecond of more than 2^18 logs repeats."""
    cursor = Cursor(["old", "busy", "first"], epoch_ms=EPOCH)
    cursor.advance("old", (EPOCH - 10 * REACH, 5))
    cursor.advance("busy", (EPOCH, SEQ_MAX + 1000))
    cursor.advance("first", (1, 0))
    got = parse(cursor.encode().decode(), ["old", "busy", "first"])
    assert (got["old"], got["first"]) == ((EPOCH - REACH, 5), (EPOCH - REACH, 0))
    assert got["old"][0] < EPOCH - 365 * 86_400_000
    assert got["busy"] == (EPOCH, SEQ_MAX)


def test_rooms_not_asked_for_are_ignored_and_missing_ones_absent() -> None:
    cursor = Cursor(["a", "b"], epoch_ms=1000)
    cursor.advance("a", (1005, 2))
    cursor.advance("b", (0, 0))
    text = cursor.encode().decode()
    assert parse(text, ["b", "c"]) == {"b": (0, 0)}
    assert parse(text, ["c"]) == {}


def test_64_uuid_rooms_a_day_of_positions_under_1_kib() -> None:
    rooms = [str(uuid.uuid4()) for _ in range(64)]
    epoch = 1_764_000_000_000
    cursor = Cursor(rooms, epoch)
    for i, room in enumerate(rooms):
        cursor.advance(room, (epoch + 86_400_000 - i, 5000))  # far from the epoch, busy ms
    assert len(cursor.encode()) < 1024


def test_only_the_moved_room_changes_and_the_text_is_cached() -> None:
    cursor = Cursor(["a", "b"], epoch_ms=10)
    cursor.advance("a", (11, 0))
    cursor.advance("b", (12, 0))
    first = cursor.encode()
    assert cursor.encode() is first
    cursor.advance("a", (13, 0))
    assert parse(cursor.encode().decode(), ["a", "b"]) == {"a": (13, 0), "b": (12, 0)}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1-0",
        "r2.AAAAAAAA",
        "r1.",
        "r1.AAAAAAA",
        "r1.AAAA!AAA",
        "r1." + "A" * 9,
        "é",
        "r1." + "A" * 8 + "AAAAAA" + "AAAAAA" + "AAB",
        "r1." + "A" * 8 + "A" * 15 * 1025,
    ],
)
def test_what_is_not_a_cursor_is_refused(text: str) -> None:
    with pytest.raises(CursorError):
        parse(text, ["a"])


def test_with_room_puts_the_room_first_and_drops_a_forged_one() -> None:
    assert with_room("r", b'{"a":1}') == b'{"roomId":"r","a":1}'
    assert with_room("r", b"{}") == b'{"roomId":"r"}'
    assert with_room("r", b'{ "a":1}') == b'{"roomId":"r","a":1}'
    assert with_room("r", b'{"roomId":"x","a":1}') == b'{"roomId":"r","a":1}'
    # The text inside a value is not a member: kept as it is.
    assert with_room("r", b'{"m":"\\"roomId\\""}') == b'{"roomId":"r","m":"\\"roomId\\""}'
    assert without_room_id(b'{"k":"roomId"}') == b'{"k":"roomId"}'
