"""The `id:` of a multi-room stream: the position of each of its rooms, in one opaque token.

Sent back as `Last-Event-ID` (or `lastEventId=`), each room resumes after its own position,
on any instance. It must stay under 1 KiB with 64 rooms of 36-character ids, so it holds no
room ids: each room is a 5-byte BLAKE2b digest of its id (two rooms of one stream share one
with odds of ~1e-9 at 64 rooms), and each position a varint offset from an epoch chosen when
the stream began, so a position costs ~5 bytes and stays valid whichever `rooms=` list it is
later sent with (a room missing from it starts live).

Layout, base64url without padding after the `r1.` prefix (which no stream id starts with):
version byte, varint epoch ms, then per room: digest, varint (0 for an empty room's `0-0`,
else zigzag(ms - epoch) + 1), varint seq. The hot path re-encodes only the room that moved.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping
from typing import Final

from .ids import StreamKey

PREFIX: Final = "r1."
_VERSION: Final = 1
_DIGEST: Final = 5
_U64: Final = (1 << 64) - 1
_MAX_TEXT: Final = 4096  # a longer Last-Event-ID is not one of ours


class CursorError(ValueError):
    """A `Last-Event-ID` that is not a cursor of this service."""


def digest(room: str) -> bytes:
    return hashlib.blake2b(room.encode(), digest_size=_DIGEST).digest()


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise CursorError("truncated")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


class Cursor:
    """One stream's positions, kept encoded per room so that a log re-encodes only its room."""

    __slots__ = ("_digests", "_epoch", "_head", "_pieces", "_text")

    def __init__(self, rooms: Iterable[str], epoch_ms: int) -> None:
        self._epoch = epoch_ms
        self._head = bytes((_VERSION,)) + _varint(epoch_ms)
        self._digests = {room: digest(room) for room in rooms}
        # Insertion order is the stream's room order: the encoding is deterministic.
        self._pieces: dict[str, bytes] = {}
        self._text: bytes | None = None

    def advance(self, room: str, key: StreamKey) -> None:
        """`room` has been sent up to `key` (positions only move forward; callers ensure it)."""
        ms, seq = key
        if ms == 0 and seq == 0:
            offset = 0
        else:
            delta = ms - self._epoch
            offset = ((delta << 1) if delta >= 0 else ((-delta << 1) - 1)) + 1
        self._pieces[room] = self._digests[room] + _varint(offset) + _varint(seq)
        self._text = None

    def encode(self) -> bytes:
        """The ASCII `id:` value (cached until a position moves)."""
        text = self._text
        if text is None:
            raw = self._head + b"".join(self._pieces.values())
            text = self._text = b"r1." + base64.urlsafe_b64encode(raw).rstrip(b"=")
        return text


def parse(text: str, rooms: Iterable[str]) -> dict[str, StreamKey]:
    """The positions `text` holds for those of `rooms` it knows; raises `CursorError`."""
    if not text.startswith(PREFIX) or len(text) > _MAX_TEXT or not text.isascii():
        raise CursorError("not a cursor")
    body = text[len(PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise CursorError("not base64url") from None
    if not raw or raw[0] != _VERSION:
        raise CursorError("unknown version")
    epoch, at = _read_varint(raw, 1)
    found: dict[bytes, StreamKey] = {}
    while at < len(raw):
        if at + _DIGEST > len(raw):
            raise CursorError("truncated")
        room_digest = raw[at : at + _DIGEST]
        offset, at = _read_varint(raw, at + _DIGEST)
        seq, at = _read_varint(raw, at)
        if offset == 0:
            ms = 0
        else:
            zigzag = offset - 1
            ms = epoch + ((zigzag >> 1) if not zigzag & 1 else -((zigzag + 1) >> 1))
        if not (0 <= ms <= _U64 and seq <= _U64):
            raise CursorError("position out of range")
        found[room_digest] = (ms, seq)
    return _match(found, rooms)


def _match(found: Mapping[bytes, StreamKey], rooms: Iterable[str]) -> dict[str, StreamKey]:
    positions: dict[str, StreamKey] = {}
    for room in rooms:
        key = found.get(digest(room))
        if key is not None:
            positions[room] = key
    return positions
