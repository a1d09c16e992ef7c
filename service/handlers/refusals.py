"""Transient refusals: a stream that cannot be served *now* is a 200 that says so.

A browser's EventSource gives up for good on any non-200 answer (DESIGN.md), so "over
MAX_CONNECTIONS", "draining" and "broker down" answer 200 with a jittered `retry:`, one
`unavailable` event, and the end of the body: the browser comes back later, or through the
load balancer to another instance.
"""

from __future__ import annotations

from aiohttp import web

from ..cors import cors_headers
from ..endings import jittered
from ..events import unavailable_frame
from ..request_id import request_id
from ..state import AppState
from ._handoff import LogStreamResponse


def stream_headers(request: web.Request, state: AppState) -> dict[str, str]:
    """Set before the stream starts: a middleware cannot add headers to a streamed response."""
    return {
        **cors_headers(request, state.settings.cors_origins),
        "X-Request-Id": request_id(request),
    }


async def unavailable(request: web.Request, state: AppState, reason: str) -> web.StreamResponse:
    state.metrics.rejected.labels(reason).inc()
    resp = LogStreamResponse(stream_headers(request, state))
    if state.draining:
        resp.force_close()
    await resp.prepare(request)
    await resp.write(unavailable_frame(reason, jittered(state.settings.retry_ms)))
    await resp.write_eof()
    return resp
