"""The room-id and Idempotency-Key rules (DESIGN.md, "Room ids").

Every Redis key is built from an id these accepted (`broker/keys.py` checks again), so a bad
id never reaches Redis.
"""

from __future__ import annotations

import re

_ROOM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_PUBLISH_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def is_valid_room_id(room: str) -> bool:
    return _ROOM_ID.fullmatch(room) is not None


def is_valid_publish_key(key: str) -> bool:
    """An `Idempotency-Key`: 1-128 characters of `A-Z a-z 0-9 . _ : -` (a UUID fits)."""
    return _PUBLISH_KEY.fullmatch(key) is not None
