"""The Redis key layout, in one place: today's names, and the hash-tagged ones of a Cluster.

`PLAIN` is DESIGN.md's v1 contract (`room:R:logs`, `room:R:history`, `room:R:publish:K`),
with v1.1's `room:R:plain:<digest>` (plain PUBLISH claims, broker/plain.py).
`TAGGED` puts a room's keys in one hash slot (`room:{R}:…`, braces literal), so the publish
script may touch them together on a Redis Cluster. The room key `room:R` (set by the app
backend for ROOM_CHECK) is the backend's name and is the same in both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..rooms import is_valid_publish_key, is_valid_room_id


def _checked(room: str) -> str:
    if not is_valid_room_id(room):
        raise ValueError(f"invalid room id {room!r}")
    return room


@dataclass(frozen=True, slots=True)
class KeySpace:
    tagged: bool = False

    def _prefix(self, room: str) -> str:
        room = _checked(room)
        return f"room:{{{room}}}" if self.tagged else f"room:{room}"

    @property
    def pattern(self) -> str:
        """The one pattern subscription of `SUBSCRIBE_MODE=pattern` (classic channels)."""
        return "room:*:logs"

    def channel(self, room: str) -> str:
        """The channel the publish scripts publish on: in `TAGGED`, a Cluster's shard channel
        (`SPUBLISH`/`SSUBSCRIBE`), in the room's slot."""
        return f"{self._prefix(room)}:logs"

    def classic(self, room: str) -> str:
        """The classic channel that plain `PUBLISH` publishers use, `room:R:logs` in both key
        spaces (a Cluster broadcasts classic pub/sub to every node, so it needs no tag)."""
        return f"room:{_checked(room)}:logs"

    def history(self, room: str) -> str:
        return f"{self._prefix(room)}:history"

    def publish(self, room: str, key: str) -> str:
        """Where one idempotent publish's fingerprint and ids are kept."""
        if not is_valid_publish_key(key):
            raise ValueError(f"invalid idempotency key {key!r}")
        return f"{self._prefix(room)}:publish:{key}"

    def plain(self, room: str, digest: str) -> str:
        """The claim of one plain PUBLISH's payload: which of its occurrences are stored."""
        return f"{self._prefix(room)}:plain:{digest}"

    def room(self, room: str) -> str:
        return f"room:{_checked(room)}"


PLAIN: Final = KeySpace(tagged=False)
TAGGED: Final = KeySpace(tagged=True)


def room_from_channel(name: bytes) -> str | None:
    """The room of a `room:R:logs` or `room:{R}:logs` channel; None when R is no room id.

    `room:*:logs` also matches `room:a:b:logs`; such channels are not rooms and are skipped.
    """
    if not (name.startswith(b"room:") and name.endswith(b":logs")):
        return None
    raw = name[5:-5]
    if raw.startswith(b"{") and raw.endswith(b"}"):
        raw = raw[1:-1]
    try:
        room = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    return room if is_valid_room_id(room) else None
