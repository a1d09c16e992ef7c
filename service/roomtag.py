"""`"roomId"` as the first member of a log on a multi-room stream, and never a forged one.

A log's own JSON is sent as it is; on a stream of several rooms it gains the room it was
published to as its first member. POST refuses a `roomId` field, a plain PUBLISH has it
removed before it is stored (`without_room_id`), and a log that still carries one (stored
before) loses it here: the stream never shows a duplicate key a reader could pick up.
"""

from __future__ import annotations

from typing import Final

import orjson

_PREFIXES: dict[str, bytes] = {}
_MAX_PREFIXES: Final = 8192
_FIELD: Final = b'"roomId"'
# room -> a log's bytes -> them with the room: a log goes to every multi-room stream of its
# room, and is tagged once for all of them (bytes cache their hash: a hit costs two lookups).
_TAGGED: dict[str, dict[bytes, bytes]] = {}
_tagged_count = 0
_MAX_TAGGED: Final = 1024


def without_room_id(data: bytes) -> bytes:
    """`data` (a JSON object's bytes) without a top-level `roomId` member."""
    if _FIELD not in data:
        return data
    obj = orjson.loads(data)
    if type(obj) is not dict or "roomId" not in obj:
        return data  # the text was inside a value
    del obj["roomId"]
    return orjson.dumps(obj)


def tagged(room: str, data: bytes) -> bytes:
    """`with_room`, remembered for the next streams of the room that send the same log."""
    global _tagged_count
    cache = _TAGGED.get(room)
    if cache is None:
        cache = _TAGGED[room] = {}
    else:
        hit = cache.get(data)
        if hit is not None:
            return hit
    if _tagged_count >= _MAX_TAGGED:
        _TAGGED.clear()
        _tagged_count = 0
        cache = _TAGGED[room] = {}
    result = cache[data] = with_room(room, data)
    _tagged_count += 1
    return result


def with_room(room: str, data: bytes) -> bytes:
    """`data` with `"roomId":room` first; once per log and stream of several rooms."""
    prefix = _PREFIXES.get(room)
    if prefix is None:
        if len(_PREFIXES) >= _MAX_PREFIXES:
            _PREFIXES.clear()
        prefix = _PREFIXES[room] = b'{"roomId":' + orjson.dumps(room)
    if _FIELD in data:
        data = without_room_id(data)
    rest = data[1:]
    if rest[:1] != b'"':  # `{}` or whitespace after the brace: the general case
        rest = rest.lstrip()
        return prefix + (rest if rest.startswith(b"}") else b"," + rest)
    return prefix + b"," + rest
