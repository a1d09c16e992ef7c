"""The stream's query, parsed once: its rooms, filters, where each room resumes, how much history.

One shape for both routes: a one-room stream resumes its room after a stream id, a multi-room
stream each of its rooms after its position in the cursor (`cursor.py`); `history=N` applies to
the rooms that do not resume.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from .. import cursor
from ..errors import ApiError
from ..filters import StreamFilter
from ..ids import StreamKey, format_id, parse_id
from ..logs import LEVELS
from ..rooms import is_valid_room_id
from .common import whole_number


@dataclass(frozen=True, slots=True)
class StreamQuery:
    rooms: tuple[str, ...]
    filter: StreamFilter | None
    # Per room, the position it resumes after (`Last-Event-ID`, else `lastEventId=`).
    resume: Mapping[str, StreamKey]
    history: int  # `?history=N`, capped at HISTORY_MAX, for the rooms that do not resume
    multi: bool  # several rooms on one stream: `connected` lists them, logs name theirs

    @classmethod
    def parse(cls, request: web.Request, rooms: tuple[str, ...], history_max: int) -> StreamQuery:
        """The one-room stream's query; raises `ApiError` 400 naming the first bad parameter."""
        last_id = _last_event_id(request)
        key = parse_id(last_id) if last_id else None
        if last_id and key is None:
            raise ApiError(400, "invalid_last_event_id", "Last-Event-ID is not a stream id")
        resume = {rooms[0]: key} if key is not None else {}
        return cls(rooms, _filter(request), resume, _history_count(request, history_max), False)

    @classmethod
    def parse_multi(
        cls, request: web.Request, rooms: tuple[str, ...], history_max: int
    ) -> StreamQuery:
        """The multi-room stream's query (its rooms checked already by `rooms_of`)."""
        last_id = _last_event_id(request)
        resume: dict[str, StreamKey] = {}
        if last_id:
            try:
                resume = cursor.parse(last_id, rooms)
            except cursor.CursorError as exc:
                raise ApiError(
                    400,
                    "invalid_last_event_id",
                    f"Last-Event-ID is not a cursor of this stream's route ({exc})",
                ) from None
        return cls(rooms, _filter(request), resume, _history_count(request, history_max), True)

    def resume_id(self, room: str) -> str | None:
        key = self.resume.get(room)
        return format_id(key) if key is not None else None

    def history_of(self, room: str) -> int:
        return 0 if room in self.resume else self.history


def rooms_of(request: web.Request, limit: int) -> tuple[str, ...]:
    """`rooms=a,b,c` (or repeated): duplicates collapse, then at most `limit`, each id valid."""
    rooms: dict[str, None] = {}
    for value in request.query.getall("rooms", ()):
        for room in value.split(","):
            room = room.strip()
            if not room:
                continue
            if not is_valid_room_id(room):
                raise ApiError(
                    400,
                    "invalid_room_id",
                    f"{room[:140]!r} is not a room id: room ids are 1-128 characters of "
                    "A-Z a-z 0-9 . _ -, starting with a letter or digit",
                )
            rooms[room] = None
    if not rooms:
        raise ApiError(400, "missing_rooms", "give the rooms to follow: ?rooms=a,b,c")
    if len(rooms) > limit:
        raise ApiError(
            400,
            "too_many_rooms",
            f"{len(rooms)} rooms: one stream follows at most {limit} (MAX_ROOMS_PER_STREAM)",
        )
    return tuple(rooms)


def _last_event_id(request: web.Request) -> str | None:
    return request.headers.get("Last-Event-ID") or request.query.get("lastEventId") or None


def _filter(request: web.Request) -> StreamFilter | None:
    level = request.query.get("level") or None
    if level is not None and level not in LEVELS:
        raise ApiError(400, "invalid_level", f"level must be one of {', '.join(LEVELS)}")
    return StreamFilter.of(level, request.query.get("agentType") or None)


def _history_count(request: web.Request, cap: int) -> int:
    raw = request.query.get("history")
    if raw is None or raw == "":
        return 0
    value = whole_number(raw)
    if value is None:
        raise ApiError(400, "invalid_history", "history must be a whole number of logs")
    return min(value, cap)
