"""The stream's query, parsed once: filters, where to resume, how much history."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from ..errors import ApiError
from ..filters import StreamFilter
from ..ids import StreamKey, parse_id
from ..logs import LEVELS
from .common import whole_number


@dataclass(frozen=True, slots=True)
class StreamQuery:
    rooms: tuple[str, ...]
    filter: StreamFilter | None
    # `Last-Event-ID` (the header EventSource sends, else `lastEventId=`) and its key.
    last_id: str | None
    last_key: StreamKey | None
    history: int  # `?history=N`, capped at HISTORY_MAX; 0 when resuming

    @classmethod
    def parse(cls, request: web.Request, rooms: tuple[str, ...], history_max: int) -> StreamQuery:
        """Raises `ApiError` 400 naming the first bad parameter."""
        level = request.query.get("level") or None
        if level is not None and level not in LEVELS:
            raise ApiError(400, "invalid_level", f"level must be one of {', '.join(LEVELS)}")
        agent_type = request.query.get("agentType") or None
        last_id = request.headers.get("Last-Event-ID") or request.query.get("lastEventId") or None
        last_key = parse_id(last_id) if last_id else None
        if last_id and last_key is None:
            raise ApiError(400, "invalid_last_event_id", "Last-Event-ID is not a stream id")
        return cls(
            rooms=rooms,
            filter=StreamFilter.of(level, agent_type),
            last_id=last_id,
            last_key=last_key,
            history=_history_count(request, history_max),
        )


def _history_count(request: web.Request, cap: int) -> int:
    raw = request.query.get("history")
    if raw is None or raw == "":
        return 0
    value = whole_number(raw)
    if value is None:
        raise ApiError(400, "invalid_history", "history must be a whole number of logs")
    return min(value, cap)
