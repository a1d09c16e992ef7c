"""The multi-room cursor: compact, round-trips every position, refuses what is not one."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.cursor import Cursor, CursorError, parse
from service.roomtag import with_room, without_room_id

U64 = (1 << 64) - 1
keys = st.tuples(st.integers(0, U64), st.integers(0, U64))


@given(st.dictionaries(st.sampled_from([f"room-{i}" for i in range(8)]), keys, min_size=1))
def test_every_position_round_trips(positions: dict[str, tuple[int, int]]) -> None:
    cursor = Cursor(positions, epoch_ms=1_764_000_000_000)
    for room, key in positions.items():
        cursor.advance(room, key)
    assert parse(cursor.encode().decode(), positions) == positions


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
    ["", "1-0", "r2.AQ", "r1.", "r1.!!", "r1.Ag", "r1.AQ" + "A" * 3, "r1.AYCAgICAgICAgICAAQ", "é"],
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
