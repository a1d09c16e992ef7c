"""The `id:` of a multi-room stream: the position of each of its rooms, in one opaque token.

Sent back as `Last-Event-ID` (or `lastEventId=`), each room resumes after its own position,
on any instance. It must stay under 1 KiB with 64 rooms of 36-character ids, so it holds no
room ids, and it is rewritten for every log a stream sends, so it is text of fixed width
that a log updates in place (no varints, no base64 of the whole on the hot path).

`r1.` (which no stream id starts with), the stream's epoch (ms, 8 characters), then per room
15 characters of the base64url alphabet: a 36-bit BLAKE2b digest of its id (two rooms of one
stream share one with odds of ~3e-8 at 64 rooms), 36 bits of position (0 for `0-0`, an empty
room; else zigzag(ms - epoch) + 1: about a year either side of the epoch, beyond which a
position is clamped) and 18 bits of sequence (clamped at 262,143 logs in one millisecond, where
a resume could repeat some). 64 rooms: 971 bytes. A room missing from `rooms=` later is
ignored; one missing from the cursor is absent from `parse`'s answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

from .ids import StreamKey

PREFIX: Final = "r1."
_ALPHABET: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_ONE: Final = [bytes((c,)) for c in _ALPHABET]
_PAIRS: Final = [bytes((a, b)) for a in _ALPHABET for b in _ALPHABET]  # 12 bits each
_VALUE: Final = {c: i for i, c in enumerate(_ALPHABET)}
_HEAD: Final = len(PREFIX) + 8
_SLOT: Final = 15  # digest 6, position 6, sequence 3
_REACH: Final = (1 << 35) - 1  # ms either side of the epoch: ~398 days
_SEQ_MAX: Final = (1 << 18) - 1
_MAX_ROOMS: Final = 1024


class CursorError(ValueError):
    """A `Last-Event-ID` that is not a cursor of this service."""


def digest(room: str) -> bytes:
    """The room's 6 characters in a cursor."""
    value = int.from_bytes(hashlib.blake2b(room.encode(), digest_size=5).digest()) >> 4
    return _chars(value, 6)


def _chars(value: int, width: int) -> bytes:
    return bytes(_ALPHABET[(value >> (6 * (width - 1 - i))) & 63] for i in range(width))


def _number(text: bytes) -> int:
    value = 0
    for c in text:
        digit = _VALUE.get(c)
        if digit is None:
            raise CursorError("not base64url")
        value = (value << 6) | digit
    return value


# Streams opened the same UTC day share their epoch, so a log's characters are computed once
# for all of them (keyed by its id's text, whose hash the str keeps).
_DAY_MS: Final = 86_400_000
_MAX_SHARED: Final = 4096
_shared_epoch = 0
_shared_pieces: dict[str, bytes] = {}


def epoch_for(now_ms: int) -> int:
    """The epoch of a stream opened at `now_ms`: the start of its UTC day."""
    global _shared_epoch
    epoch = now_ms - now_ms % _DAY_MS
    if epoch != _shared_epoch:
        _shared_epoch = epoch
        _shared_pieces.clear()
    return epoch


class Cursor:
    """One stream's positions; `advance` rewrites one room's 9 characters in place."""

    __slots__ = ("_at", "_buf", "_epoch", "_text")

    def __init__(self, rooms: Iterable[str], epoch_ms: int) -> None:
        self._epoch = epoch_ms
        buf = bytearray(PREFIX.encode() + _chars(epoch_ms & ((1 << 48) - 1), 8))
        self._at: dict[str, int] = {}
        for room in rooms:
            self._at[room] = len(buf) + 6
            buf += digest(room) + b"A" * 9  # `0-0` until the replay places it
        self._buf = buf
        self._text: bytes | None = None

    def advance(self, room: str, key: StreamKey, stream_id: str | None = None) -> None:
        """`room` has been sent up to `key` (whose text, when given, finds its characters
        among those other streams of this epoch made for the same log)."""
        at = self._at[room]
        if stream_id is not None and self._epoch == _shared_epoch:
            piece = _shared_pieces.get(stream_id)
            if piece is None:
                piece = self._piece(key)
                if len(_shared_pieces) >= _MAX_SHARED:
                    _shared_pieces.clear()
                _shared_pieces[stream_id] = piece
        else:
            piece = self._piece(key)
        self._buf[at : at + 9] = piece
        self._text = None

    def _piece(self, key: StreamKey) -> bytes:
        ms, seq = key
        if ms == 0 and seq == 0:
            offset = 0
        else:
            # Clamped to what 36 bits hold, keeping its sign: a position far back becomes the
            # earliest one (a resume then repeats, never skips).
            delta = max(-_REACH, min(ms - self._epoch, _REACH - 1))
            offset = ((delta << 1) if delta >= 0 else ((-delta << 1) - 1)) + 1
        value = (offset << 18) | (seq if seq < _SEQ_MAX else _SEQ_MAX)
        pairs = _PAIRS
        return (
            pairs[value >> 42]
            + pairs[(value >> 30) & 4095]
            + pairs[(value >> 18) & 4095]
            + pairs[(value >> 6) & 4095]
            + _ONE[value & 63]
        )

    def encode(self) -> bytes:
        """The ASCII `id:` value (kept until a position moves)."""
        text = self._text
        if text is None:
            text = self._text = bytes(self._buf)
        return text


def parse(text: str, rooms: Iterable[str]) -> dict[str, StreamKey]:
    """The positions `text` holds for those of `rooms` it knows; raises `CursorError`."""
    raw = text.encode("ascii", "replace")
    if not text.startswith(PREFIX) or (len(raw) - _HEAD) % _SLOT or len(raw) < _HEAD:
        raise CursorError("not a cursor")
    if (len(raw) - _HEAD) // _SLOT > _MAX_ROOMS:
        raise CursorError("too long")
    epoch = _number(raw[len(PREFIX) : _HEAD])
    found: dict[bytes, StreamKey] = {}
    for at in range(_HEAD, len(raw), _SLOT):
        value = _number(raw[at + 6 : at + _SLOT])
        _number(raw[at : at + 6])  # the digest must be of the alphabet too
        offset, seq = value >> 18, value & _SEQ_MAX
        if offset == 0:
            ms = 0 if seq == 0 else -1
        else:
            zigzag = offset - 1
            ms = epoch + ((zigzag >> 1) if not zigzag & 1 else -((zigzag + 1) >> 1))
        if ms < 0:
            raise CursorError("position out of range")
        found[raw[at : at + 6]] = (ms, seq)
    return {room: found[d] for room in rooms if (d := digest(room)) in found}
