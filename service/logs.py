"""The log format of DESIGN.md, and validation of logs that publishers send over HTTP."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any, Final

import orjson

LEVELS: Final = ("debug", "info", "success", "warn", "error")
_LEVEL_SET: Final = frozenset(LEVELS)
MAX_AGENT_TYPE: Final = 128
# Objects and arrays inside one another, at most. orjson encodes at most 254 levels and the
# history page wraps a log in three more; no log line needs more than a few.
MAX_NESTING: Final = 64


_last_ms = -1
_last_iso = ""


def utc_now_iso() -> str:
    """Now, to the millisecond, as DESIGN.md's timestamps: formatted once per millisecond (a
    busy gateway asks for it per request; formatting costs ~14x the clock read)."""
    global _last_ms, _last_iso
    ms = time.time_ns() // 1_000_000
    if ms != _last_ms:
        _last_iso = _iso(ms)
        _last_ms = ms
    return _last_iso


def _iso(ms: int) -> str:
    seconds, milli = divmod(ms, 1000)
    when = datetime.fromtimestamp(seconds, UTC).replace(microsecond=milli * 1000)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class InvalidLog(ValueError):
    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


def normalize(obj: Any, now: str | None = None) -> dict[str, Any]:
    """Check one log and fill in `timestamp` (`now`, else the time of the call) and
    `metadata`; unknown extra fields are kept.

    Run once per log of a batch of up to 100: one `get` per field, and a set for the levels
    (behind the `str` check, so an unhashable `level` is refused, not a TypeError).
    """
    if not isinstance(obj, dict):
        raise InvalidLog("log", "a log must be a JSON object")
    get = obj.get
    agent = get("agentType")
    if not isinstance(agent, str) or not 0 < len(agent) <= MAX_AGENT_TYPE:
        raise InvalidLog("agentType", f"must be a string of 1-{MAX_AGENT_TYPE} characters")
    level = get("level")
    if not isinstance(level, str) or level not in _LEVEL_SET:
        raise InvalidLog("level", f"must be one of {', '.join(LEVELS)}")
    if not isinstance(get("message"), str):
        raise InvalidLog("message", "must be a string")
    metadata = get("metadata")
    if metadata is None:
        obj["metadata"] = {}
    elif not isinstance(metadata, dict):
        raise InvalidLog("metadata", "must be a JSON object")
    if "id" in obj:
        raise InvalidLog("id", "is assigned by the service")
    if "roomId" in obj:
        raise InvalidLog("roomId", "is the room published to (the URL's), never a log's field")
    ts = get("timestamp")
    if ts is None:
        obj["timestamp"] = now or utc_now_iso()
    elif not isinstance(ts, str) or not _is_iso8601(ts):
        raise InvalidLog("timestamp", "must be an ISO-8601 date and time")
    return obj


def encode_log(log: dict[str, Any]) -> bytes | None:
    """`log`'s one-line JSON, or None when it nests objects and arrays more than MAX_NESTING
    deep.

    Its own brackets bound a log's depth, so only a log with more than MAX_NESTING of them is
    walked; counting the request body's instead made every log of a batch of 33 or more a
    suspect. orjson refuses to encode past 254 levels: that is too deep as well.
    """
    try:
        data = orjson.dumps(log)
    except orjson.JSONEncodeError:
        if nests_too_deep(log):
            return None
        raise
    if data.count(b"{") + data.count(b"[") > MAX_NESTING and nests_too_deep(log):
        return None
    return data


# A run of 19 digits: the shortest integer outside [-2**63, 2**64), what orjson keeps exact.
# Searched for as 19 nines once every digit is a nine: a regex scan of `[0-9]{19}` tries every
# position and cost a 100-log request more than everything else it does.
_DIGITS_AS_NINES: Final = bytes.maketrans(b"012345678", b"999999999")
_LONG_DIGITS: Final = b"9" * 19
_JSON_TOKEN: Final = re.compile(rb'"(?:[^"\\]|\\.)*"|-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?')


def inexact_integer(raw: bytes) -> bytes | None:
    """The first integer of the JSON text `raw` that orjson would turn into a float (beyond
    64 bits), or None. Cheap for nearly every log: it needs a run of 19 digits to look."""
    if _LONG_DIGITS not in raw.translate(_DIGITS_AS_NINES):
        return None
    for match in _JSON_TOKEN.finditer(raw):
        token = match.group()
        is_integer = token[:1] != b'"' and token.lstrip(b"-").isdigit()
        if is_integer and not -(1 << 63) <= int(token) < (1 << 64):
            return token
    return None


def too_deep(obj: Any, raw: bytes) -> bool:
    """Whether `obj` (parsed from `raw`) nests objects and arrays more than MAX_NESTING deep.

    Free for nearly every log: with few brackets in `raw` it cannot nest deeper than their
    count. Otherwise the parsed containers are walked, never the bytes.
    """
    if not may_nest_too_deep(raw):
        return False
    return nests_too_deep(obj)


def may_nest_too_deep(raw: bytes) -> bool:
    """False when the JSON text `raw` has too few brackets to nest more than MAX_NESTING."""
    return raw.count(b"{") + raw.count(b"[") > MAX_NESTING


# Every byte but the brackets that open a level and the newline that joins encodings: what
# `any_may_nest_too_deep` deletes.
_NOT_OPENINGS: Final = bytes(b for b in range(256) if b not in b"{[\n")


def any_may_nest_too_deep(encoded: list[bytes]) -> bool:
    """False when none of the JSON encodings (one line each) has more than MAX_NESTING
    opening brackets, so none nests deeper: one pass over a batch's bytes, not one per log."""
    openings = b"\n".join(encoded).translate(None, _NOT_OPENINGS)
    if len(openings) - len(encoded) + 1 <= MAX_NESTING:
        return False
    return max(map(len, openings.split(b"\n"))) > MAX_NESTING


def nests_too_deep(obj: Any) -> bool:
    """Whether the parsed `obj` nests objects and arrays more than MAX_NESTING deep."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            return True
        children = node.values() if type(node) is dict else node
        stack.extend((c, depth + 1) for c in children if type(c) in (dict, list))
    return False


def _is_iso8601(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True
