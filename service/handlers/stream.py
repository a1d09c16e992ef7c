"""`GET /api/v1/rooms/{roomId}/logs`: the SSE stream.

Thin by design: check, register, replay, then hand the socket to the subscriber and return.
A live stream is its transport plus its `Subscriber` (the transport's protocol), written to by
the hub; `StreamEndings` ends it, whoever asks (client gone, slow consumer, drain, expiry).
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
from ..events import connected_frame, gap_frame, log_frame, unavailable_frame
from ..ids import parse_id
from ..logconfig import request_id
from ..logs import LEVELS, utc_now_iso
from ..state import STATE, AppState
from ..subscriber import LAST_CHUNK, Subscriber
from .common import authorize, check_room, valid_room

log = logging.getLogger("service.stream")

# Closes the client is told about (it may come back: elsewhere, later, or with a new token).
_SAY_WHY = frozenset({"shutdown", "token_expired"})
# A closing stream with more than this waiting in its socket buffer is not reading: abort it.
SLOW_SOCKET_BYTES = 64 * 1024


class LogStreamResponse(EventSourceResponse):
    """aiohttp-sse's response (headers, method check, TCP_USER_TIMEOUT) without its ping task.

    Heartbeats come from one process-wide ticker through the hub, so a stream costs no timer
    and no task of its own. Once `handed_off`, the body belongs to the subscriber, which ends
    it (`0\\r\\n\\r\\n`) when the stream closes: aiohttp's `write_eof` does nothing.
    """

    handed_off = False

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return self._payload_writer
        self._set_tcp_user_timeout(request)
        self.enable_chunked_encoding()
        return await web.StreamResponse.prepare(self, request)

    async def write_eof(self, data: bytes = b"") -> None:
        if not self.handed_off:
            await super().write_eof(data)


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
    await resp.write(unavailable_frame(reason, retry_ms))
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
        owner=request.app[ENDINGS],
        expires_at=grant.expires_at + settings.jwt_leeway,
        request_id=request_id(request),
        opened=time.monotonic(),
    )
    # Registered before history is read: whatever arrives meanwhile waits in the buffer and is
    # merged after the replay by id, so there is neither a gap nor a duplicate.
    state.hub.add(sub)
    state.metrics.connections.inc()
    state.metrics.rooms.set(state.hub.room_count)
    resp = LogStreamResponse(headers=_headers(request, state))
    # A stream always ends with this side closing the connection; saying so up front keeps a
    # load balancer from putting it back in its keep-alive pool and sending a request down it.
    resp.force_close()
    resp.headers["Connection"] = "close"  # aiohttp-sse sets keep-alive itself
    try:
        await resp.prepare(request)
        try:
            head = await _replay(state, sub, last_id, history_n)
        except BrokerUnavailable:
            sub.close("broker_unavailable")
            await resp.write(unavailable_frame("broker_unavailable", settings.retry_ms))
            return resp
        await resp.write(head)
        transport = request.transport
        if sub.close_reason is None and transport is not None and not transport.is_closing():
            _hand_off(request, resp, sub, transport)
        elif sub.close_reason in _SAY_WHY:  # drained or expired during the replay
            await resp.write(unavailable_frame(sub.close_reason, _jittered(settings.retry_ms)))
    except ConnectionError:
        pass  # the client left during the replay (aiohttp's ClientConnectionResetError too)
    finally:
        if sub.direct is None:  # not handed off: this handler was the whole stream
            sub.close("client_gone")
    return resp


def _hand_off(
    request: web.Request, resp: LogStreamResponse, sub: Subscriber, transport: asyncio.Transport
) -> None:
    """Make the subscriber the socket's protocol and let aiohttp forget the connection.

    aiohttp's per-connection state (request, parser, handler tasks, timers: ~12 KiB) exists to
    read requests; an SSE stream never reads again. After this the handler returns, aiohttp
    finishes the request (access log) without writing or closing anything, and the stream
    lives on as its transport plus the subscriber, written to by the hub.
    """
    handler = request.protocol
    assert not resp.keep_alive  # `_stream` made it close: aiohttp's loop ends after it
    resp.handed_off = True  # aiohttp's write_eof must not end the body: the stream goes on
    sub.attach(transport, chunked=resp.chunked)
    handler.transport = None  # aiohttp can neither write to nor close the socket now
    task = request.task
    # Once the request is finished (access log written), drop the connection from aiohttp's
    # books (its server's list, keep-alive timer, parser) as if the client had left.
    task.add_done_callback(lambda _: handler.connection_lost(None))


class StreamEndings:
    """The one place a stream ends, whoever ends it (client, hub, drain, expiry, handler).

    It runs once per stream (from `Subscriber.close`), and for a live stream also ends the
    HTTP body and the connection, since no handler is left to do it.
    """

    def __init__(self, state: AppState) -> None:
        self._state = state

    def closed(self, sub: Subscriber) -> None:
        state = self._state
        hub = state.hub
        hub.remove(sub)
        reason = sub.close_reason
        transport = sub.direct
        sub.direct = sub.transport = None  # the transport holds the subscriber: no cycle left
        if transport is not None and not transport.is_closing():
            _end_body(transport, sub, reason, state.settings.retry_ms)
        metrics = state.metrics
        metrics.events_sent.inc(sub.sent)
        metrics.bytes_sent.inc(sub.sent_bytes)
        sub.sent = sub.sent_bytes = 0
        metrics.connections.dec()
        metrics.rooms.set(hub.room_count)
        duration = time.monotonic() - sub.opened
        log.info(
            "stream closed: room=%s reason=%s after %.1fs",
            sub.room,
            reason,
            duration,
            extra={
                "room": sub.room,
                "reason": reason,
                "request_id": sub.request_id,
                "duration_ms": round(duration * 1000, 1),
            },
        )


ENDINGS: web.AppKey[StreamEndings] = web.AppKey("roomlogs_stream_endings", StreamEndings)


def _end_body(
    transport: asyncio.Transport, sub: Subscriber, reason: str | None, retry_ms: int
) -> None:
    if transport.get_write_buffer_size() > SLOW_SOCKET_BYTES:
        transport.abort()  # a client that does not read: nothing more will reach it anyway
        return
    if reason in _SAY_WHY:
        # Jittered, so the browsers of a draining instance come back spread out.
        farewell = unavailable_frame(reason, _jittered(retry_ms))
        transport.write(
            b"%x\r\n%b\r\n" % (len(farewell), farewell) if sub.direct_chunked else farewell
        )
    if sub.direct_chunked:
        transport.write(LAST_CHUNK)
    transport.close()


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
        connected_frame(
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
        parts.append(gap_frame(last_id, entries[0][0] if entries else None))
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
