"""Stream ids (`<ms>-<seq>`, the shape of Redis stream ids) shared by both brokers."""

from __future__ import annotations

import re

StreamKey = tuple[int, int]

_STREAM_ID = re.compile(r"(\d{1,20})-(\d{1,20})")


def parse_id(text: str) -> StreamKey | None:
    """The sortable key of a stream id, or None when `text` is not one."""
    m = _STREAM_ID.fullmatch(text)
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2))


def format_id(key: StreamKey) -> str:
    return f"{key[0]}-{key[1]}"
