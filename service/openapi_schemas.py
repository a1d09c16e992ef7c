"""The parts of the OpenAPI document that service/openapi.py assembles into paths: the patterns
the code enforces, the common headers and error answers, and the components (what a log, an
error, a page and each of the stream's events look like)."""

from __future__ import annotations

from typing import Any, Final

from .events import EventName
from .logs import LEVELS, MAX_AGENT_TYPE
from .settings import Settings

JSON: Final = "application/json"
Schema = dict[str, Any]

ROOM_ID_PATTERN: Final = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
KEY_PATTERN: Final = "^[A-Za-z0-9._:-]{1,128}$"
# `ms-seq`, each below 2**64 (Redis' limit): up to 19 digits, or 20 up to 17999…, which leaves
# out the few 20-digit values from 18000… to 2**64 - 1 that a regex would spell at length.
_U64: Final = "(?:[0-9]{1,19}|1[0-7][0-9]{18})"
STREAM_ID_PATTERN: Final = f"^{_U64}-{_U64}$"
TIMESTAMP_PATTERN: Final = (
    "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-5][0-9]:[0-5][0-9]([.][0-9]+)?"
    "(Z|[+-][0-9]{2}:[0-9]{2})$"
)
# The reasons an `unavailable` event gives (README: transient refusals, streams that end).
UNAVAILABLE_REASONS: Final = (
    "broker_unavailable",
    "draining",
    "max_connections",
    "auth_unavailable",
    "shutdown",
    "token_expired",
)


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def header(description: str, *, required: bool = False, schema: Schema | None = None) -> Schema:
    return {
        "description": description,
        "required": required,
        "schema": schema or {"type": "string"},
    }


REQUEST_ID: Final = header(
    "The caller's X-Request-Id when it is 1-128 characters of A-Z a-z 0-9 . _ : -, else a new "
    "one; also in the access log line.",
    required=True,
    schema={"type": "string", "pattern": KEY_PATTERN},
)
CORS: Final = {
    "Access-Control-Allow-Origin": header("The request's Origin, when it is in CORS_ORIGINS."),
    "Access-Control-Allow-Credentials": header(
        "`true` with Access-Control-Allow-Origin.", schema={"type": "string", "enum": ["true"]}
    ),
    "Vary": header("`Origin` with Access-Control-Allow-Origin."),
}
COMMON_HEADERS: Final = {"X-Request-Id": REQUEST_ID, **CORS}
RETRY_AFTER: Final = header(
    "Seconds to wait before trying again.",
    required=True,
    schema={"type": "string", "pattern": "^[0-9]+$"},
)
WWW_AUTHENTICATE: Final = header(
    '`Bearer realm="roomlogs"`, with `error="invalid_token"` and `error_description` for a '
    "token that was refused.",
    required=True,
    schema={"type": "string", "pattern": '^Bearer realm="roomlogs"'},
)


def error(description: str, codes: list[str], **headers: Schema) -> Schema:
    """An error answer: `{"error": code, "detail": text}`, `error` one of `codes`."""
    schema: Schema = {
        "allOf": [ref("Error")],
        "properties": {"error": {"enum": sorted(codes)}},
    }
    listed = ", ".join(f"`{c}`" for c in sorted(codes))
    return {
        "description": f"{description} Codes: {listed}.",
        "headers": {**COMMON_HEADERS, **{k.replace("_", "-"): v for k, v in headers.items()}},
        "content": {JSON: {"schema": schema}},
    }


def ok(description: str, media: str, schema: Schema, **headers: Schema) -> Schema:
    return {
        "description": description,
        "headers": {**COMMON_HEADERS, **{k.replace("_", "-"): v for k, v in headers.items()}},
        "content": {media: {"schema": schema}},
    }


def head(get: Schema) -> Schema:
    """HEAD, which aiohttp adds to a GET route: the GET's statuses and headers, no body."""
    responses = {
        status: {"description": r["description"], "headers": r.get("headers", {})}
        for status, r in get["responses"].items()
    }
    return {
        "operationId": get["operationId"] + "Head",
        "summary": f"HEAD of {get['operationId']}: its status and headers, no body",
        "tags": get.get("tags", []),
        "parameters": get.get("parameters", []),
        "responses": responses,
        **({"security": get["security"]} if "security" in get else {}),
    }


UNAUTHORIZED: Final = error(
    "No token, or a token that was refused (bad signature, expired, wrong issuer or audience, "
    "malformed claims, an algorithm not allowed).",
    ["missing_token", "invalid_token", "token_expired"],
    WWW_Authenticate=WWW_AUTHENTICATE,
)
FORBIDDEN: Final = error(
    "The room is not in the token's `rooms` claim (`publish` claim for a publish).",
    ["room_not_allowed"],
)
UNKNOWN_ROOM: Final = error(
    "ROOM_CHECK=redis and the key `room:{roomId}` does not exist.", ["unknown_room"]
)
UNAVAILABLE: Final = error(
    "The broker (or the JWKS endpoint) cannot serve the request now; nothing was stored.",
    ["broker_unavailable", "auth_unavailable"],
    Retry_After=RETRY_AFTER,
)


def room_param() -> Schema:
    return {
        "name": "roomId",
        "in": "path",
        "required": True,
        "description": "1-128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit; "
        "anything else is 400 `invalid_room_id`.",
        "schema": {"type": "string", "pattern": ROOM_ID_PATTERN},
    }


def query(name: str, description: str, schema: Schema) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def schemas(settings: Settings) -> dict[str, Schema]:
    stream_id = {"type": "string", "pattern": STREAM_ID_PATTERN, "description": "A stream id."}
    log_fields: dict[str, Schema] = {
        "timestamp": {
            "type": "string",
            "format": "date-time",
            # Python's ISO-8601 reader: RFC 3339 without lower-case `t`/`z` or leap seconds.
            "pattern": TIMESTAMP_PATTERN,
            "description": "ISO-8601; filled in (UTC, milliseconds, `Z`) when absent.",
        },
        "agentType": {"type": "string", "minLength": 1, "maxLength": MAX_AGENT_TYPE},
        "level": {"type": "string", "enum": list(LEVELS)},
        "message": {"type": "string"},
        "metadata": {"type": ["object", "null"], "description": "`{}` when absent or null."},
    }
    return {
        "Error": {
            "type": "object",
            "description": "Every refused request: a code to act on and a text for people.",
            "required": ["error", "detail"],
            "additionalProperties": False,
            "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
        },
        "StreamId": stream_id,
        "JsonValue": {
            "description": "Any JSON value whose integers fit 64 bits (-2^63 to 2^64 - 1), "
            "which orjson keeps exactly; a published log with a larger one is 400 "
            "`invalid_json` (send it as a string). Floats are not bounded.",
            "anyOf": [
                {"type": ["null", "boolean", "string"]},
                {"type": "number", "not": {"type": "integer"}},
                {"type": "integer", "minimum": -(1 << 63), "maximum": (1 << 64) - 1},
                {"type": "array", "items": ref("JsonValue")},
                {"type": "object", "additionalProperties": ref("JsonValue")},
            ],
        },
        "Log": {
            "type": "object",
            "description": "One log to publish. Unknown extra fields are kept; `id` is "
            "refused (the service assigns it). At most MAX_MESSAGE_BYTES encoded and nested "
            "at most 64 deep (else 413 `too_large`, 400 `invalid_log`).",
            "required": ["agentType", "level", "message"],
            "properties": {
                **log_fields,
                "metadata": {
                    "type": ["object", "null"],
                    "additionalProperties": ref("JsonValue"),
                    "description": "`{}` when absent or null.",
                },
            },
            "additionalProperties": ref("JsonValue"),
            "not": {"required": ["id"]},
        },
        "StoredLog": {
            "type": "object",
            "description": "A retained log with its stream id first. Logs published by a plain "
            "Redis `PUBLISH` may be any JSON object, so only `id` is certain.",
            "required": ["id"],
            "properties": {"id": ref("StreamId"), **log_fields},
        },
        "Published": {
            "type": "object",
            "required": ["roomId", "ids"],
            "additionalProperties": False,
            "properties": {
                "roomId": {"type": "string", "pattern": ROOM_ID_PATTERN},
                "ids": {"type": "array", "items": ref("StreamId"), "minItems": 1},
                "replayed": {
                    "const": True,
                    "description": "Present when an earlier request with this "
                    "Idempotency-Key stored these logs: nothing was stored again.",
                },
            },
        },
        "HistoryPage": {
            "type": "object",
            "required": ["roomId", "next", "logs"],
            "additionalProperties": False,
            "properties": {
                "roomId": {"type": "string", "pattern": ROOM_ID_PATTERN},
                "next": {
                    "oneOf": [ref("StreamId"), {"type": "null"}],
                    "description": "The `after` of the next page; null on the last one.",
                },
                "logs": {"type": "array", "items": ref("StoredLog")},
            },
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "additionalProperties": False,
            "properties": {"status": {"const": "ok"}},
        },
        "Ready": {
            "type": "object",
            "required": ["status"],
            "additionalProperties": False,
            "properties": {"status": {"const": "ready"}},
        },
        "NotReady": {
            "type": "object",
            "required": ["status", "reason"],
            "additionalProperties": False,
            "properties": {
                "status": {"const": "unavailable"},
                "reason": {
                    "type": "string",
                    "description": "`draining`, `broker: …` or `workers: 1 of 2 ready (…)`.",
                },
            },
        },
        # The stream's events (StreamEvent, built in `build`) and their `data`.
        "ConnectedEvent": {
            "type": "object",
            "required": ["roomId", "timestamp", "recovered", "heartbeatMs"],
            "properties": {
                "roomId": {"type": "string", "pattern": ROOM_ID_PATTERN},
                "timestamp": {"type": "string"},
                "recovered": {
                    "type": "boolean",
                    "description": "False when Last-Event-ID pointed before the oldest "
                    "retained log of a trimmed history (a `gap` follows).",
                },
                "heartbeatMs": {"type": "integer", "minimum": 1},
            },
        },
        "GapEvent": {
            "type": "object",
            "required": ["after", "resumedFrom"],
            "additionalProperties": False,
            "properties": {
                "after": {"oneOf": [ref("StreamId"), {"type": "null"}]},
                "resumedFrom": {"oneOf": [ref("StreamId"), {"type": "null"}]},
            },
        },
        "LogEvent": {
            "type": "object",
            "description": "The stored log as one line of JSON (without `id`: that is the "
            "event's `id:` line). Usually the fields of Log; from a plain `PUBLISH`, any "
            "object.",
            "properties": log_fields,
        },
        "HeartbeatEvent": {
            "type": "object",
            "required": ["timestamp"],
            "additionalProperties": False,
            "properties": {"timestamp": {"type": "string"}},
        },
        "UnavailableEvent": {
            "type": "object",
            "required": ["reason", "retryMs"],
            "additionalProperties": False,
            "properties": {
                "reason": {"type": "string", "enum": list(UNAVAILABLE_REASONS)},
                "retryMs": {
                    "type": "integer",
                    "minimum": settings.retry_ms,
                    "description": "The jittered `retry:` of the same frame, between RETRY_MS "
                    "and twice that.",
                },
            },
        },
    }


_EVENTS: Final = {
    EventName.CONNECTED: (
        "First, after a `retry:` line: the stream is registered.",
        False,
        "ConnectedEvent",
    ),
    EventName.GAP: (
        "Logs after `after` are no longer held; the replay resumes from `resumedFrom`.",
        False,
        "GapEvent",
    ),
    EventName.LOG: (
        "One log. `id:` is its stream id (to resend as Last-Event-ID); a log from a plain "
        "`PUBLISH` whose store failed comes without one.",
        True,
        "LogEvent",
    ),
    EventName.HEARTBEAT: (
        "Every HEARTBEAT_INTERVAL: the stream is alive.",
        False,
        "HeartbeatEvent",
    ),
    EventName.UNAVAILABLE: (
        "The stream cannot be served now, or ends on the gateway's side; with a `retry:` line, "
        "and the stream ends after it.",
        False,
        "UnavailableEvent",
    ),
}


def sse_event(
    name: EventName, description: str, with_id: bool, data: str, id_schema: str = "StreamId"
) -> Schema:
    """One event as OpenAPI 3.2 describes an SSE item (`event`, `data`, `id`, `retry`), its
    `data` one line of JSON whose schema is `contentSchema`."""
    properties: dict[str, Schema] = {
        "event": {"const": name.value},
        "data": {
            "type": "string",
            "contentMediaType": JSON,
            "contentSchema": ref(data),
        },
        "retry": {"type": "integer", "minimum": 0},
    }
    if with_id:
        properties["id"] = ref(id_schema)
    return {
        "title": name.value,
        "description": description,
        "type": "object",
        "required": ["event", "data"],
        "properties": properties,
    }


def event_schemas() -> list[Schema]:
    """Every event of the stream, for `StreamEvent`'s `oneOf`."""
    return [sse_event(name, *spec) for name, spec in _EVENTS.items()]
