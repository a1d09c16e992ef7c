"""The OpenAPI 3.1 document of the HTTP API, served at `GET /openapi.json`.

Built here rather than kept as a JSON file so that what the code already names once (levels,
event names, id patterns, batch and page limits, the cookie and the history cap of this
instance's settings) is taken from the code, not copied into a second place that can drift.
`tests/unit/test_openapi_document.py` checks it with openapi-spec-validator and against the
app's router; `tests/process/test_schemathesis.py` checks the live server against it.

The stream's events follow OpenAPI 3.2's convention for `text/event-stream` (a schema of one
event: `event`, `data`, `id`, `retry`), which a 3.1 document may use as its `schema`:
`StreamEvent` is one of the five events, each `data` a JSON text whose `contentSchema` is in
`components.schemas` (docs/api.md). schemathesis reads it so, and checks every event.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from .events import EventName
from .handlers.history import HISTORY_LIMIT_MAX
from .handlers.publish import MAX_BATCH
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


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _header(description: str, *, required: bool = False, schema: Schema | None = None) -> Schema:
    return {
        "description": description,
        "required": required,
        "schema": schema or {"type": "string"},
    }


_REQUEST_ID: Final = _header(
    "The caller's X-Request-Id when it is 1-128 characters of A-Z a-z 0-9 . _ : -, else a new "
    "one; also in the access log line.",
    required=True,
    schema={"type": "string", "pattern": KEY_PATTERN},
)
_CORS: Final = {
    "Access-Control-Allow-Origin": _header("The request's Origin, when it is in CORS_ORIGINS."),
    "Access-Control-Allow-Credentials": _header(
        "`true` with Access-Control-Allow-Origin.", schema={"type": "string", "enum": ["true"]}
    ),
    "Vary": _header("`Origin` with Access-Control-Allow-Origin."),
}
_COMMON_HEADERS: Final = {"X-Request-Id": _REQUEST_ID, **_CORS}
_RETRY_AFTER: Final = _header(
    "Seconds to wait before trying again.",
    required=True,
    schema={"type": "string", "pattern": "^[0-9]+$"},
)
_WWW_AUTHENTICATE: Final = _header(
    '`Bearer realm="roomlogs"`, with `error="invalid_token"` and `error_description` for a '
    "token that was refused.",
    required=True,
    schema={"type": "string", "pattern": '^Bearer realm="roomlogs"'},
)


def _error(description: str, codes: list[str], **headers: Schema) -> Schema:
    """An error answer: `{"error": code, "detail": text}`, `error` one of `codes`."""
    schema: Schema = {
        "allOf": [_ref("Error")],
        "properties": {"error": {"enum": sorted(codes)}},
    }
    listed = ", ".join(f"`{c}`" for c in sorted(codes))
    return {
        "description": f"{description} Codes: {listed}.",
        "headers": {**_COMMON_HEADERS, **{k.replace("_", "-"): v for k, v in headers.items()}},
        "content": {JSON: {"schema": schema}},
    }


def _ok(description: str, media: str, schema: Schema, **headers: Schema) -> Schema:
    return {
        "description": description,
        "headers": {**_COMMON_HEADERS, **{k.replace("_", "-"): v for k, v in headers.items()}},
        "content": {media: {"schema": schema}},
    }


def _head(get: Schema) -> Schema:
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


_UNAUTHORIZED: Final = _error(
    "No token, or a token that was refused (bad signature, expired, wrong issuer or audience, "
    "malformed claims, an algorithm not allowed).",
    ["missing_token", "invalid_token", "token_expired"],
    WWW_Authenticate=_WWW_AUTHENTICATE,
)
_FORBIDDEN: Final = _error(
    "The room is not in the token's `rooms` claim (`publish` claim for a publish).",
    ["room_not_allowed"],
)
_UNKNOWN_ROOM: Final = _error(
    "ROOM_CHECK=redis and the key `room:{roomId}` does not exist.", ["unknown_room"]
)
_UNAVAILABLE: Final = _error(
    "The broker (or the JWKS endpoint) cannot serve the request now; nothing was stored.",
    ["broker_unavailable", "auth_unavailable"],
    Retry_After=_RETRY_AFTER,
)


def _room_param() -> Schema:
    return {
        "name": "roomId",
        "in": "path",
        "required": True,
        "description": "1-128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit; "
        "anything else is 400 `invalid_room_id`.",
        "schema": {"type": "string", "pattern": ROOM_ID_PATTERN},
    }


def _query(name: str, description: str, schema: Schema) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _schemas(settings: Settings) -> dict[str, Schema]:
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
                {"type": "array", "items": _ref("JsonValue")},
                {"type": "object", "additionalProperties": _ref("JsonValue")},
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
                    "additionalProperties": _ref("JsonValue"),
                    "description": "`{}` when absent or null.",
                },
            },
            "additionalProperties": _ref("JsonValue"),
            "not": {"required": ["id"]},
        },
        "StoredLog": {
            "type": "object",
            "description": "A retained log with its stream id first. Logs published by a plain "
            "Redis `PUBLISH` may be any JSON object, so only `id` is certain.",
            "required": ["id"],
            "properties": {"id": _ref("StreamId"), **log_fields},
        },
        "Published": {
            "type": "object",
            "required": ["roomId", "ids"],
            "additionalProperties": False,
            "properties": {
                "roomId": {"type": "string", "pattern": ROOM_ID_PATTERN},
                "ids": {"type": "array", "items": _ref("StreamId"), "minItems": 1},
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
                    "oneOf": [_ref("StreamId"), {"type": "null"}],
                    "description": "The `after` of the next page; null on the last one.",
                },
                "logs": {"type": "array", "items": _ref("StoredLog")},
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
                "after": {"oneOf": [_ref("StreamId"), {"type": "null"}]},
                "resumedFrom": {"oneOf": [_ref("StreamId"), {"type": "null"}]},
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


def _event(name: EventName, description: str, with_id: bool, data: str) -> Schema:
    """One event as OpenAPI 3.2 describes an SSE item (`event`, `data`, `id`, `retry`), its
    `data` one line of JSON whose schema is `contentSchema`."""
    properties: dict[str, Schema] = {
        "event": {"const": name.value},
        "data": {
            "type": "string",
            "contentMediaType": JSON,
            "contentSchema": _ref(data),
        },
        "retry": {"type": "integer", "minimum": 0},
    }
    if with_id:
        properties["id"] = _ref("StreamId")
    return {
        "title": name.value,
        "description": description,
        "type": "object",
        "required": ["event", "data"],
        "properties": properties,
    }


def build(settings: Settings) -> dict[str, Any]:
    """The document for an app with these settings (the cookie name, the history cap)."""
    security: list[dict[str, list[str]]] = [{"bearer": []}, {"accessToken": []}, {"cookie": []}]
    room_tag = ["rooms"]
    # A query parameter given empty is taken as not given.
    stream_id_or_empty = {"type": "string", "pattern": f"^$|{STREAM_ID_PATTERN}"}
    last_event_id_desc = (
        "Resume after this stream id (EventSource resends it by itself); the header wins over "
        "`lastEventId`. Not a stream id: 400 `invalid_last_event_id`."
    )
    stream: Schema = {
        "operationId": "streamLogs",
        "summary": "The room's logs as Server-Sent Events",
        "description": "Replays what `Last-Event-ID`/`lastEventId` or `history` asks for, then "
        "streams live until the client leaves, the token expires or the gateway ends it (with "
        "an `unavailable` event). A stream that cannot be served now (broker down, draining, "
        "over MAX_CONNECTIONS, JWKS unreachable, ROOM_CHECK cannot be made) is a 200 with one "
        "`unavailable` event, never a 503: EventSource gives up for good on any non-200. The "
        "events are described by `StreamEvent` (docs/api.md).",
        "tags": room_tag,
        "security": security,
        "parameters": [
            _room_param(),
            _query("lastEventId", last_event_id_desc, stream_id_or_empty),
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "description": last_event_id_desc,
                "schema": stream_id_or_empty,
            },
            _query(
                "history",
                f"Send the last N logs first (capped at HISTORY_MAX, here "
                f"{settings.history_max}); ignored when resuming. ASCII digits only, else "
                "400 `invalid_history`.",
                {
                    "anyOf": [
                        {"type": "integer", "minimum": 0, "maximum": 999_999_999},
                        {"const": ""},
                    ]
                },
            ),
            _query(
                "level",
                "Minimum level (debug < info < success < warn < error); empty: all. Else 400 "
                "`invalid_level`.",
                {"type": "string", "enum": ["", *LEVELS]},
            ),
            _query("agentType", "Only logs of this agentType; empty: all.", {"type": "string"}),
        ],
        "responses": {
            "200": {
                "description": "The event stream (`Cache-Control: no-cache`, `X-Accel-Buffering: "
                "no`, `Connection: close`).",
                "headers": {
                    **_COMMON_HEADERS,
                    "Cache-Control": _header(
                        "`no-cache`.", required=True, schema={"type": "string", "const": "no-cache"}
                    ),
                    "X-Accel-Buffering": _header(
                        "`no`: nginx passes each event on at once.",
                        required=True,
                        schema={"type": "string", "const": "no"},
                    ),
                },
                "content": {"text/event-stream": {"schema": _ref("StreamEvent")}},
            },
            "400": _error(
                "A bad room id or query.",
                ["invalid_room_id", "invalid_last_event_id", "invalid_history", "invalid_level"],
            ),
            "401": _UNAUTHORIZED,
            "403": _FORBIDDEN,
            "404": _UNKNOWN_ROOM,
        },
    }
    publish: Schema = {
        "operationId": "publishLogs",
        "summary": f"Publish one log or an array of 1-{MAX_BATCH}",
        "tags": room_tag,
        "security": security,
        "parameters": [
            _room_param(),
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "1-128 characters of A-Z a-z 0-9 . _ : - (else 400 "
                "`invalid_idempotency_key`). The same key, room and body within "
                "IDEMPOTENCY_TTL stores nothing and answers the first ids with `replayed`; "
                "the same key with another body is 422.",
                "schema": {"type": "string", "pattern": KEY_PATTERN},
            },
        ],
        "requestBody": {
            "required": True,
            "content": {
                JSON: {
                    "schema": {
                        "oneOf": [
                            _ref("Log"),
                            {
                                "type": "array",
                                "items": _ref("Log"),
                                "minItems": 1,
                                "maxItems": MAX_BATCH,
                            },
                        ]
                    }
                }
            },
        },
        "responses": {
            "202": _ok(
                "Stored and published, in order.",
                JSON,
                _ref("Published"),
                Idempotent_Replayed=_header(
                    "`true` when nothing was stored because this Idempotency-Key already was.",
                    schema={"type": "string", "enum": ["true"]},
                ),
            ),
            "400": _error(
                "A bad room id, Idempotency-Key or body (the detail names the field, "
                "`[3].level …` for the fourth log of an array).",
                [
                    "invalid_room_id",
                    "invalid_idempotency_key",
                    "invalid_json",
                    "invalid_body",
                    "too_many_logs",
                    "invalid_log",
                ],
            ),
            "401": _UNAUTHORIZED,
            "403": _FORBIDDEN,
            "404": _UNKNOWN_ROOM,
            "413": _error("A log over MAX_MESSAGE_BYTES, or a body over the limit.", ["too_large"]),
            "422": _error(
                "This Idempotency-Key was used for another body.", ["idempotency_key_reused"]
            ),
            "503": _UNAVAILABLE,
            "504": _error(
                "The logs may or may not have been stored: send them again with the same "
                "Idempotency-Key.",
                ["publish_outcome_unknown"],
                Retry_After=_RETRY_AFTER,
            ),
        },
    }
    history: Schema = {
        "operationId": "roomHistory",
        "summary": "Retained logs as JSON, oldest first, in pages",
        "tags": room_tag,
        "security": security,
        "parameters": [
            _room_param(),
            _query(
                "after",
                "Only logs after this stream id (a page's `next`); empty: from the oldest. Else "
                "400 `invalid_after`.",
                stream_id_or_empty,
            ),
            _query(
                "limit",
                f"Page size, 1-{HISTORY_LIMIT_MAX} (ASCII digits), else 400 `invalid_limit`.",
                {"type": "integer", "minimum": 1, "maximum": HISTORY_LIMIT_MAX, "default": 100},
            ),
        ],
        "responses": {
            "200": _ok("A page of retained logs.", JSON, _ref("HistoryPage")),
            "400": _error(
                "A bad room id or query.", ["invalid_room_id", "invalid_after", "invalid_limit"]
            ),
            "401": _UNAUTHORIZED,
            "403": _FORBIDDEN,
            "404": _UNKNOWN_ROOM,
            "503": _UNAVAILABLE,
        },
    }
    healthz: Schema = {
        "operationId": "healthz",
        "summary": "Liveness: 200 while the process serves",
        "tags": ["probes"],
        "responses": {"200": _ok("Alive.", JSON, _ref("Health"))},
    }
    readyz: Schema = {
        "operationId": "readyz",
        "summary": "Readiness: the broker subscription is live, the instance is not draining "
        "and (WORKERS=N) every worker reports ready",
        "tags": ["probes"],
        "responses": {
            "200": _ok("Ready.", JSON, _ref("Ready")),
            "503": _ok("Not ready, and why.", JSON, _ref("NotReady")),
        },
    }
    metrics: Schema = {
        "operationId": "metrics",
        "summary": "Prometheus text format",
        "tags": ["probes"],
        "responses": {"200": _ok("The metrics.", "text/plain", {"type": "string"})},
    }
    document: Schema = {
        "operationId": "openapi",
        "summary": "This document",
        "tags": ["meta"],
        "responses": {"200": _ok("OpenAPI 3.1.", JSON, {"type": "object"})},
    }
    conditional = [
        {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "description": "An ETag of an earlier answer: 304 while the file is unchanged.",
            "schema": {"type": "string"},
        },
        {
            "name": "If-Modified-Since",
            "in": "header",
            "required": False,
            "description": "An HTTP date: 304 when the file is not newer.",
            "schema": {"type": "string"},
        },
    ]
    file_headers = {
        "Cache-Control": _header("`no-cache`: revalidated by ETag.", required=True),
        "ETag": _header("The file's version.", required=True),
        "X-Content-Type-Options": _header("`nosniff`.", required=True),
    }
    not_modified = {
        "description": "Unchanged since the ETag or date given.",
        "headers": {**_COMMON_HEADERS, "ETag": file_headers["ETag"]},
    }
    viewer: Schema = {
        "operationId": "viewer",
        "summary": "The built-in log viewer page",
        "tags": ["viewer"],
        "parameters": conditional,
        "responses": {
            "200": _ok(
                "The page, with a Content-Security-Policy that allows no inline script.",
                "text/html",
                {"type": "string"},
                **{k.replace("-", "_"): v for k, v in file_headers.items()},
                Content_Security_Policy=_header("Only the page's own scripts.", required=True),
            ),
            "304": not_modified,
        },
    }
    static: Schema = {
        "operationId": "viewerFile",
        "summary": "The viewer's scripts and styles",
        "tags": ["viewer"],
        "parameters": [
            {
                "name": "name",
                "in": "path",
                "required": True,
                "description": "A file of the viewer (e.g. `viewer.js`); any other: 404.",
                "schema": {"type": "string", "minLength": 1},
            },
            *conditional,
        ],
        "responses": {
            "200": {
                "description": "The file.",
                "headers": {**_COMMON_HEADERS, **file_headers},
                "content": {
                    media: {"schema": {"type": "string"}}
                    for media in ("text/javascript", "text/css", "image/png", "image/svg+xml")
                },
            },
            "304": not_modified,
            "404": _error("No such file.", ["not_found"]),
        },
    }
    paths: dict[str, dict[str, Schema]] = {
        "/api/v1/rooms/{roomId}/logs": {"get": stream, "post": publish},
        "/api/v1/rooms/{roomId}/logs/history": {"get": history},
        "/healthz": {"get": healthz},
        "/readyz": {"get": readyz},
        "/metrics": {"get": metrics},
        "/openapi.json": {"get": document},
        "/": {"get": viewer},
        "/static/{name}": {"get": static},
    }
    for path, item in paths.items():
        if path != "/api/v1/rooms/{roomId}/logs":  # the stream's route has no HEAD
            item["head"] = _head(item["get"])
    schemas = _schemas(settings)
    schemas["StreamEvent"] = {
        "description": "One event of the stream (docs/api.md): `event` names it, `data` is "
        "one line of JSON described by `contentSchema`.",
        "oneOf": [_event(name, *spec) for name, spec in _EVENTS.items()],
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "roomlogs",
            "version": "1",
            "description": "Streams the live logs of rooms to browsers over Server-Sent "
            'Events. Every error body is `{"error": code, "detail": text}`; a path that '
            "does not exist is 404 `not_found`, a method a path does not take 405 "
            "`method_not_allowed` with `Allow`. A CORS preflight (OPTIONS with "
            "Access-Control-Request-Method) is answered 204 on any path. Stream events: "
            "`components.schemas.StreamEvent` (docs/api.md).",
        },
        "tags": [
            {"name": "rooms", "description": "Streams, publishing and history."},
            {"name": "probes", "description": "For the orchestrator and Prometheus."},
            {"name": "viewer", "description": "The built-in page."},
            {"name": "meta", "description": "This document."},
        ],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "accessToken": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "access_token",
                    "description": "For EventSource, which cannot send headers; redacted in "
                    "access logs. Used when there is no Authorization header.",
                },
                "cookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": settings.auth_cookie,
                    "description": "AUTH_COOKIE; used when there is neither a header nor "
                    "access_token.",
                },
            },
        },
    }


def encoded(settings: Settings) -> bytes:
    return orjson.dumps(build(settings))
