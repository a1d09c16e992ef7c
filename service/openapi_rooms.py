"""The OpenAPI operation of `GET /api/v1/logs?rooms=` and its events, derived from the one-room
stream's so that what both share (filters, history, answers, headers) is written once."""

from __future__ import annotations

import copy
from typing import Any

from .events import EventName
from .openapi_schemas import ROOM_ID_PATTERN, Schema, error, query, ref, sse_event

CURSOR_PATTERN = r"^r1\.[A-Za-z0-9_-]+$"


def rooms_stream(stream: Schema, max_rooms: int) -> Schema:
    """The multi-room stream operation, from the one-room `stream` operation."""
    op: dict[str, Any] = copy.deepcopy(stream)
    op["operationId"] = "streamRooms"
    op["summary"] = "Several rooms' logs on one stream (Server-Sent Events)"
    op["description"] = (
        "As the one-room stream, for up to MAX_ROOMS_PER_STREAM rooms: each log's data has "
        "`roomId` first, and its `id:` is a cursor holding every room's position; sent back as "
        "Last-Event-ID or lastEventId, each room resumes after its own. Events: "
        "`RoomsStreamEvent` (docs/contract.md)."
    )
    cursor_or_empty = {"type": "string", "pattern": f"^$|{CURSOR_PATTERN}"}
    cursor_desc = (
        "Resume each room after its position in this cursor (an `id:` of this route); the "
        "header wins over `lastEventId`. Not such a cursor: 400 `invalid_last_event_id`."
    )
    parameters: list[Schema] = [
        {
            "name": "rooms",
            "in": "query",
            "required": True,
            "description": f"Room ids joined by commas; duplicates collapse, then 1-{max_rooms} "
            "(else 400 `too_many_rooms`, or `missing_rooms`); a bad id is 400 "
            "`invalid_room_id` naming it.",
            "schema": {
                "type": "string",
                "pattern": rf"^({ROOM_ID_PATTERN[1:-1]})(,({ROOM_ID_PATTERN[1:-1]}))*$",
            },
        },
        query("lastEventId", cursor_desc, cursor_or_empty),
        {
            "name": "Last-Event-ID",
            "in": "header",
            "required": False,
            "description": cursor_desc,
            "schema": cursor_or_empty,
        },
    ]
    kept = [p for p in op["parameters"] if p["name"] not in {"roomId", "lastEventId"}]
    op["parameters"] = parameters + [p for p in kept if p["name"] != "Last-Event-ID"]
    op["responses"]["200"]["content"]["text/event-stream"]["schema"] = ref("RoomsStreamEvent")
    op["responses"]["400"] = error(
        "A bad room id, too many or no rooms, or a bad query.",
        [
            "invalid_room_id",
            "missing_rooms",
            "too_many_rooms",
            "invalid_last_event_id",
            "invalid_history",
            "invalid_level",
        ],
    )
    return op


def rooms_schemas() -> dict[str, Schema]:
    """The multi-room stream's events and their data."""
    room = {"type": "string", "pattern": ROOM_ID_PATTERN}
    events = [
        sse_event(
            EventName.CONNECTED,
            "First, after a `retry:` line: the stream is registered.",
            False,
            "RoomsConnectedEvent",
        ),
        sse_event(
            EventName.GAP,
            "One room's logs after `after` are no longer held; its replay resumes from "
            "`resumedFrom`.",
            False,
            "RoomsGapEvent",
        ),
        sse_event(
            EventName.LOG,
            "One log, `roomId` first. `id:` is the stream's cursor.",
            True,
            "RoomsLogEvent",
            id_schema="Cursor",
        ),
        sse_event(EventName.HEARTBEAT, "Every HEARTBEAT_INTERVAL: alive.", False, "HeartbeatEvent"),
        sse_event(
            EventName.UNAVAILABLE,
            "Cannot be served now, or ends on the gateway's side.",
            False,
            "UnavailableEvent",
        ),
    ]
    return {
        "Cursor": {"type": "string", "pattern": CURSOR_PATTERN},
        "RoomsConnectedEvent": {
            "type": "object",
            "required": ["rooms", "timestamp", "recovered", "heartbeatMs"],
            "properties": {
                "rooms": {"type": "array", "items": room, "minItems": 1},
                "timestamp": {"type": "string"},
                "recovered": {"type": "boolean"},
                "heartbeatMs": {"type": "integer", "minimum": 1},
            },
        },
        "RoomsGapEvent": {
            "type": "object",
            "required": ["roomId", "after", "resumedFrom"],
            "additionalProperties": False,
            "properties": {
                "roomId": room,
                "after": {"oneOf": [ref("StreamId"), {"type": "null"}]},
                "resumedFrom": {"oneOf": [ref("StreamId"), {"type": "null"}]},
            },
        },
        "RoomsLogEvent": {
            "type": "object",
            "required": ["roomId"],
            "description": "The log with the room it was published to as its first member.",
            "properties": {"roomId": room},
        },
        "RoomsStreamEvent": {
            "description": "One event of the multi-room stream.",
            "oneOf": events,
        },
    }
