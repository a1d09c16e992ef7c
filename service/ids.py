"""Stream ids (`<ms>-<seq>`, the shape of Redis stream ids) shared by both brokers."""

from __future__ import annotations

StreamKey = tuple[int, int]

_U64_MAX = (1 << 64) - 1
MAX_KEY: StreamKey = (_U64_MAX, _U64_MAX)


def parse_id(text: str) -> StreamKey | None:
    """The sortable key of a stream id, or None when `text` is not one.

    Once per live message: string methods, not a regex (a third of the cost).
    """
    ms_text, dash, seq_text = text.partition("-")
    if (
        not dash
        or not text.isascii()  # isdigit() alone would take other scripts' digits
        or not ms_text.isdigit()
        or not seq_text.isdigit()
        or len(ms_text) > 20
        or len(seq_text) > 20
    ):
        return None
    ms, seq = int(ms_text), int(seq_text)
    if ms > _U64_MAX or seq > _U64_MAX:  # Redis refuses these ids
        return None
    return ms, seq


def format_id(key: StreamKey) -> str:
    return f"{key[0]}-{key[1]}"
