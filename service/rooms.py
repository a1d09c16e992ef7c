"""Room ids and the Redis keys built from them.

Every key is built here, and only from an id that `is_valid_room_id` accepted, so a bad id can
never reach Redis (DESIGN.md, "Room ids").
"""

from __future__ import annotations

import re

_ROOM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_PUBLISH_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")

CHANNEL_PATTERN = "room:*:logs"


def is_valid_room_id(room: str) -> bool:
    return _ROOM_ID.fullmatch(room) is not None


def _checked(room: str) -> str:
    if not is_valid_room_id(room):
        raise ValueError(f"invalid room id {room!r}")
    return room


def channel(room: str) -> str:
    return f"room:{_checked(room)}:logs"


def history_key(room: str) -> str:
    return f"room:{_checked(room)}:history"


def room_key(room: str) -> str:
    return f"room:{_checked(room)}"


def is_valid_publish_key(key: str) -> bool:
    """An `Idempotency-Key`: 1-128 characters of `A-Z a-z 0-9 . _ : -` (a UUID fits)."""
    return _PUBLISH_KEY.fullmatch(key) is not None


def publish_key(room: str, key: str) -> str:
    """Where one idempotent publish's fingerprint and ids are kept."""
    if not is_valid_publish_key(key):
        raise ValueError(f"invalid idempotency key {key!r}")
    return f"room:{_checked(room)}:publish:{key}"


def room_from_channel(name: bytes) -> str | None:
    """The room of a `room:{id}:logs` channel, or None when the id is not a valid room id.

    `room:*:logs` also matches `room:a:b:logs`; such channels are not rooms and are skipped.
    """
    if not (name.startswith(b"room:") and name.endswith(b":logs")):
        return None
    try:
        room = name[5:-5].decode("ascii")
    except UnicodeDecodeError:
        return None
    return room if is_valid_room_id(room) else None
