"""Stream ids (`<ms>-<seq>`, the shape of Redis stream ids) shared by both brokers."""

from __future__ import annotations

import re

StreamKey = tuple[int, int]

_STREAM_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
_U64_MAX = (1 << 64) - 1
MAX_KEY: StreamKey = (_U64_MAX, _U64_MAX)


def parse_id(text: str) -> StreamKey | None:
    """The sortable key of a stream id, or None when `text` is not one."""
    m = _STREAM_ID.fullmatch(text)
    if m is None:
        return None
    ms, seq = int(m.group(1)), int(m.group(2))
    if ms > _U64_MAX or seq > _U64_MAX:  # Redis refuses these ids
        return None
    return ms, seq


def format_id(key: StreamKey) -> str:
    return f"{key[0]}-{key[1]}"
