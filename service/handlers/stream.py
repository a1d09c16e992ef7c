"""`GET /api/v1/rooms/{roomId}/logs`: the SSE stream.

Thin by design: check, register, replay, then one loop that waits on the subscriber (the hub
wakes it for logs, heartbeats, slow-consumer and shutdown closes, and a client that left) and
writes whatever is queued as one coalesced write.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

import orjson
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp_sse import EventSourceResponse

from ..broker import BrokerUnavailable
from ..cors import cors_headers
from ..errors import ApiError
from ..frames import event_frame, log_frame, utc_now_iso
from ..ids import parse_id
from ..logconfig import request_id
from ..logs import LEVELS
from ..state import STATE, AppState
from ..subscriber import Subscriber
from .common import authorize, check_room, valid_room

log = logging.getLogger("service.stream")

# Closes the client is told about (it may come back: elsewhere, later, or with a new token).
_SAY_WHY = frozenset({"shutdown", "token_expired"})
_GONE = ConnectionError  # aiohttp's ClientConnectionResetError is one too


class LogStreamResponse(EventSourceResponse):
    """aiohttp-sse's response (headers, method check, TCP_USER_TIMEOUT) without its ping task.

    Heartbeats come from one process-wide ticker through the hub, so a stream costs no timer
    and no task of its own; `stop_streaming()`/`wait()` still work through a plain future.
    """

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return self._payload_writer
        self._set_tcp_user_timeout(request)
        self.enable_chunked_encoding()
        writer = await web.StreamResponse.prepare(self, request)
        self._ping_task = asyncio.get_running_loop().create_future()  # type: ignore[assignment]
        return writer


async def unavailable(request: web.Request, state: AppState, reason: str) -> web.StreamResponse:
    """A transient refusal a browser's EventSource retries: 200, `retry:`, `unavailable`, close.

    Any non-200 status makes EventSource give up for good (DESIGN.md), so this is not a 503.
    """
    state.metrics.rejected.labels(reason).inc()
    retry_ms = _jittered(state.settings.retry_ms)
    resp = LogStreamResponse(headers=_headers(request, state))
    if state.draining:
        resp.force_close()
        resp.headers["Connection"] = "close"  # aiohttp-sse sets keep-alive itself
    await resp.prepare(request)
    await resp.write(_unavailable_frame(reason, retry_ms))
    await resp.write_eof()
    return resp


async def stream_logs(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    try:
        return await _stream(request, state)
    except ApiError as exc:
        if exc.status != 503:
            raise
        # Any non-200 answer makes EventSource give up for good: "not now" must be a 200.
        return await unavailable(request, state, exc.code)


async def _stream(request: web.Request, state: AppState) -> web.StreamResponse:
    settings = state.settings
    room = valid_room(request)
    grant = await authorize(request, state, room, publish=False)
    min_level = request.query.get("level") or None
    if min_level is not None and min_level not in LEVELS:
        raise ApiError(400, "invalid_level", f"level must be one of {', '.join(LEVELS)}")
    agent_type = request.query.get("agentType") or None
    last_id = request.headers.get("Last-Event-ID") or request.query.get("lastEventId") or None
    last_key = parse_id(last_id) if last_id else None
    if last_id and last_key is None:
        raise ApiError(400, "invalid_last_event_id", "Last-Event-ID is not a stream id")
    history_n = _history_count(request, settings.history_max)
    await check_room(state, room)

    if state.draining:
        return await unavailable(request, state, "draining")
    if not state.broker.ready:
        return await unavailable(request, state, "broker_unavailable")
    if len(state.hub) >= settings.max_connections:
        return await unavailable(request, state, "max_connections")

    sub = Subscriber(
        room,
        settings.subscriber_buffer,
        min_level=min_level,
        agent_type=agent_type,
        transport=request.transport,
    )
    # Registered before history is read: whatever arrives meanwhile waits in the buffer and is
    # merged after the replay by id, so there is neither a gap nor a duplicate.
    state.hub.add(sub)
    opened = time.monotonic()
    metrics = state.metrics
    metrics.connections.inc()
    metrics.rooms.set(state.hub.room_count)
    latency = metrics.latency
    resp = LogStreamResponse(headers=_headers(request, state))
    try:
        await resp.prepare(request)
        try:
            head = await _replay(state, sub, last_id, history_n)
        except BrokerUnavailable:
            state.hub.remove(sub)
            await resp.write(_unavailable_frame("broker_unavailable", settings.retry_ms))
            return resp
        await resp.write(head)
        # From here on the hub may write frames straight to the socket while the stream idles.
        sub.direct_chunked = resp.chunked
        sub.direct = request.transport
        timeout = grant.expires_at - time.time() + settings.jwt_leeway
        expiry = asyncio.get_running_loop().call_later(max(timeout, 0), sub.close, "token_expired")
        try:
            while True:
                await sub.wait()
                if sub.close_reason is not None:
                    break
                data = sub.take()
                if data:
                    sub.busy = True
                    await resp.write(data)
                    sub.busy = False
                    metrics.events_sent.inc(data.count(b"\n\n"))
                    metrics.bytes_sent.inc(len(data))
                    if sub.oldest_ms:
                        latency.observe(max(time.time() - sub.oldest_ms / 1000, 0.0))
        finally:
            expiry.cancel()
        if sub.close_reason in _SAY_WHY:
            # Jittered, so the browsers of a draining instance come back spread out.
            await resp.write(_unavailable_frame(sub.close_reason, _jittered(settings.retry_ms)))
    except _GONE:
        pass
    finally:
        state.hub.remove(sub)
        sub.close("client_gone")
        sub.direct = None
        metrics.events_sent.inc(sub.sent)
        metrics.bytes_sent.inc(sub.sent_bytes)
        metrics.connections.dec()
        metrics.rooms.set(state.hub.room_count)
        log.info(
            "stream closed: room=%s reason=%s after %.1fs",
            room,
            sub.close_reason,
            time.monotonic() - opened,
            extra={
                "room": room,
                "reason": sub.close_reason,
                "request_id": request_id(request),
                "duration_ms": round((time.monotonic() - opened) * 1000, 1),
            },
        )
    return resp


async def _replay(state: AppState, sub: Subscriber, last_id: str | None, history_n: int) -> bytes:
    """The opening bytes: `retry:` + `connected`, then `gap` if needed, then the replay."""
    settings = state.settings
    broker = state.broker
    recovered = True
    entries: list[tuple[str, bytes]] = []
    if last_id is not None:
        last_key = parse_id(last_id)
        assert last_key is not None
        recovered = (await broker.window(sub.room)).covers(last_key)
        entries = await broker.history(sub.room, last_id, settings.history_max)
    elif history_n:
        entries = await broker.last(sub.room, history_n)
    parts = [
        event_frame(
            "connected",
            {
                "roomId": sub.room,
                "timestamp": utc_now_iso(),
                "recovered": recovered,
                # Lets a client notice a dead connection: no event for ~2.5 intervals.
                "heartbeatMs": int(settings.heartbeat_interval * 1000),
            },
            settings.retry_ms,
        )
    ]
    if not recovered:
        parts.append(
            event_frame(
                "gap", {"after": last_id, "resumedFrom": entries[0][0] if entries else None}
            )
        )
    sent = 0
    for stream_id, data in entries:
        if sub.filtered:
            log = orjson.loads(data)
            if not sub.wants(log.get("level"), log.get("agentType")):
                continue
        parts.append(log_frame(stream_id, data))
        sent += 1
    if entries:
        sub.after = parse_id(entries[-1][0])
    state.metrics.replayed.inc(sent)
    return b"".join(parts)


def _headers(request: web.Request, state: AppState) -> dict[str, str]:
    """Set before the stream starts: a middleware cannot add headers to a streamed response."""
    return {
        **cors_headers(request, state.settings.cors_origins),
        "X-Request-Id": request_id(request),
    }


def _unavailable_frame(reason: str, retry_ms: int) -> bytes:
    return event_frame("unavailable", {"reason": reason, "retryMs": retry_ms}, retry_ms)


def _jittered(base_ms: int) -> int:
    """Between RETRY_MS and twice that: no thundering herd of reconnects."""
    return int(base_ms + random.uniform(0, base_ms))  # noqa: S311 - not security


def _history_count(request: web.Request, cap: int) -> int:
    raw = request.query.get("history")
    if raw is None or raw == "":
        return 0
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ApiError(400, "invalid_history", "history must be a whole number of logs")
    return min(value, cap)
