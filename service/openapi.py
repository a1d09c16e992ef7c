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

from typing import Any

import orjson

from .handlers.history import HISTORY_LIMIT_MAX
from .handlers.publish import MAX_BATCH
from .logs import LEVELS
from .openapi_rooms import rooms_schemas, rooms_stream
from .openapi_schemas import (
    COMMON_HEADERS,
    FORBIDDEN,
    JSON,
    KEY_PATTERN,
    RETRY_AFTER,
    STREAM_ID_PATTERN,
    UNAUTHORIZED,
    UNAVAILABLE,
    UNKNOWN_ROOM,
    Schema,
    error,
    event_schemas,
    head,
    header,
    ok,
    query,
    ref,
    room_param,
    schemas,
)
from .settings import Settings


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
            room_param(),
            query("lastEventId", last_event_id_desc, stream_id_or_empty),
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "description": last_event_id_desc,
                "schema": stream_id_or_empty,
            },
            query(
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
            query(
                "level",
                "Minimum level (debug < info < success < warn < error); empty: all. Else 400 "
                "`invalid_level`.",
                {"type": "string", "enum": ["", *LEVELS]},
            ),
            query("agentType", "Only logs of this agentType; empty: all.", {"type": "string"}),
        ],
        "responses": {
            "200": {
                "description": "The event stream (`Cache-Control: no-cache`, `X-Accel-Buffering: "
                "no`, `Connection: close`).",
                "headers": {
                    **COMMON_HEADERS,
                    "Cache-Control": header(
                        "`no-cache`.", required=True, schema={"type": "string", "const": "no-cache"}
                    ),
                    "X-Accel-Buffering": header(
                        "`no`: nginx passes each event on at once.",
                        required=True,
                        schema={"type": "string", "const": "no"},
                    ),
                },
                "content": {"text/event-stream": {"schema": ref("StreamEvent")}},
            },
            "400": error(
                "A bad room id or query.",
                ["invalid_room_id", "invalid_last_event_id", "invalid_history", "invalid_level"],
            ),
            "401": UNAUTHORIZED,
            "403": FORBIDDEN,
            "404": UNKNOWN_ROOM,
        },
    }
    publish: Schema = {
        "operationId": "publishLogs",
        "summary": f"Publish one log or an array of 1-{MAX_BATCH}",
        "tags": room_tag,
        "security": security,
        "parameters": [
            room_param(),
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
                            ref("Log"),
                            {
                                "type": "array",
                                "items": ref("Log"),
                                "minItems": 1,
                                "maxItems": MAX_BATCH,
                            },
                        ]
                    }
                }
            },
        },
        "responses": {
            "202": ok(
                "Stored and published, in order.",
                JSON,
                ref("Published"),
                Idempotent_Replayed=header(
                    "`true` when nothing was stored because this Idempotency-Key already was.",
                    schema={"type": "string", "enum": ["true"]},
                ),
            ),
            "400": error(
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
            "401": UNAUTHORIZED,
            "403": FORBIDDEN,
            "404": UNKNOWN_ROOM,
            "413": error("A log over MAX_MESSAGE_BYTES, or a body over the limit.", ["too_large"]),
            "422": error(
                "This Idempotency-Key was used for another body.", ["idempotency_key_reused"]
            ),
            "503": UNAVAILABLE,
            "504": error(
                "The logs may or may not have been stored: send them again with the same "
                "Idempotency-Key.",
                ["publish_outcome_unknown"],
                Retry_After=RETRY_AFTER,
            ),
        },
    }
    history: Schema = {
        "operationId": "roomHistory",
        "summary": "Retained logs as JSON, oldest first, in pages",
        "tags": room_tag,
        "security": security,
        "parameters": [
            room_param(),
            query(
                "after",
                "Only logs after this stream id (a page's `next`); empty: from the oldest. Else "
                "400 `invalid_after`.",
                stream_id_or_empty,
            ),
            query(
                "limit",
                f"Page size, 1-{HISTORY_LIMIT_MAX} (ASCII digits), else 400 `invalid_limit`.",
                {"type": "integer", "minimum": 1, "maximum": HISTORY_LIMIT_MAX, "default": 100},
            ),
        ],
        "responses": {
            "200": ok("A page of retained logs.", JSON, ref("HistoryPage")),
            "400": error(
                "A bad room id or query.", ["invalid_room_id", "invalid_after", "invalid_limit"]
            ),
            "401": UNAUTHORIZED,
            "403": FORBIDDEN,
            "404": UNKNOWN_ROOM,
            "503": UNAVAILABLE,
        },
    }
    healthz: Schema = {
        "operationId": "healthz",
        "summary": "Liveness: 200 while the process serves",
        "tags": ["probes"],
        "responses": {"200": ok("Alive.", JSON, ref("Health"))},
    }
    readyz: Schema = {
        "operationId": "readyz",
        "summary": "Readiness: the broker subscription is live, the instance is not draining "
        "and (WORKERS=N) every worker reports ready",
        "tags": ["probes"],
        "responses": {
            "200": ok("Ready.", JSON, ref("Ready")),
            "503": ok("Not ready, and why.", JSON, ref("NotReady")),
        },
    }
    metrics: Schema = {
        "operationId": "metrics",
        "summary": "Prometheus text format",
        "tags": ["probes"],
        "responses": {"200": ok("The metrics.", "text/plain", {"type": "string"})},
    }
    document: Schema = {
        "operationId": "openapi",
        "summary": "This document",
        "tags": ["meta"],
        "responses": {"200": ok("OpenAPI 3.1.", JSON, {"type": "object"})},
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
        "Cache-Control": header("`no-cache`: revalidated by ETag.", required=True),
        "ETag": header("The file's version.", required=True),
        "X-Content-Type-Options": header("`nosniff`.", required=True),
    }
    not_modified = {
        "description": "Unchanged since the ETag or date given.",
        "headers": {**COMMON_HEADERS, "ETag": file_headers["ETag"]},
    }
    viewer: Schema = {
        "operationId": "viewer",
        "summary": "The built-in log viewer page",
        "tags": ["viewer"],
        "parameters": conditional,
        "responses": {
            "200": ok(
                "The page, with a Content-Security-Policy that allows no inline script.",
                "text/html",
                {"type": "string"},
                **{k.replace("-", "_"): v for k, v in file_headers.items()},
                Content_Security_Policy=header("Only the page's own scripts.", required=True),
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
                "headers": {**COMMON_HEADERS, **file_headers},
                "content": {
                    media: {"schema": {"type": "string"}}
                    for media in ("text/javascript", "text/css", "image/png", "image/svg+xml")
                },
            },
            "304": not_modified,
            "404": error("No such file.", ["not_found"]),
        },
    }
    paths: dict[str, dict[str, Schema]] = {
        "/api/v1/rooms/{roomId}/logs": {"get": stream, "post": publish},
        "/api/v1/rooms/{roomId}/logs/history": {"get": history},
        "/api/v1/logs": {"get": rooms_stream(stream, settings.max_rooms_per_stream)},
        "/healthz": {"get": healthz},
        "/readyz": {"get": readyz},
        "/metrics": {"get": metrics},
        "/openapi.json": {"get": document},
        "/": {"get": viewer},
        "/static/{name}": {"get": static},
    }
    for path, item in paths.items():
        if path not in ("/api/v1/rooms/{roomId}/logs", "/api/v1/logs"):  # streams: no HEAD
            item["head"] = head(item["get"])
    components = schemas(settings) | rooms_schemas()
    components["StreamEvent"] = {
        "description": "One event of the stream (docs/api.md): `event` names it, `data` is "
        "one line of JSON described by `contentSchema`.",
        "oneOf": event_schemas(),
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
            "schemas": components,
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
