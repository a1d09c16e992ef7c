"""Room ids (`rooms.is_valid_room_id`) and the Redis keys built from them (`broker.keys`):
an invalid room id never becomes a key, in either key space."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.broker.keys import PLAIN, TAGGED, room_from_channel
from service.rooms import is_valid_room_id


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
