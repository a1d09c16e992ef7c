"""`GET /api/v1/rooms/{roomId}/logs` and `GET /api/v1/logs?rooms=`: the SSE streams.

Check, register, replay, hand off: the handler returns once the stream is live, and the
stream lives on as its socket, `Connection` and `Subscriber`, written to by the hub and ended
in `endings.py`, whoever ends it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..auth import Grant
from ..broker import BrokerUnavailable
from ..cursor import Cursor, epoch_for
from ..endings import Ending
from ..errors import ApiError
from ..request_id import request_id
from ..state import STATE, AppState
from ..subscriber import Subscriber
from ._handoff import LogStreamResponse, hand_off
from .common import authorize, authorize_all, check_room, valid_room
from .refusals import stream_headers, unavailable
from .replay import replay
from .stream_query import StreamQuery, rooms_of


async def stream_logs(request: web.Request) -> web.StreamResponse:
    """One room: its logs with their stream ids."""
    return await _refusing_transiently(request, _one_room)


async def stream_rooms(request: web.Request) -> web.StreamResponse:
    """Several rooms on one stream: each log names its room, the `id:` is the cursor."""
    return await _refusing_transiently(request, _many_rooms)


async def _refusing_transiently(
    request: web.Request,
    checks: Callable[[web.Request, AppState], Awaitable[tuple[StreamQuery, Grant]]],
) -> web.StreamResponse:
    state = request.app[STATE]
    try:
        query, grant = await checks(request, state)
        return await _stream(request, state, query, grant)
    except ApiError as exc:
        if exc.status != 503:
            raise
        # Any non-200 answer makes EventSource give up for good: "not now" must be a 200.
        return await unavailable(request, state, exc.code)


async def _one_room(request: web.Request, state: AppState) -> tuple[StreamQuery, Grant]:
    room = valid_room(request)
    grant = await authorize(request, state, room, publish=False)
    query = StreamQuery.parse(request, (room,), state.settings.history_max)
    await check_room(state, room)
    return query, grant


async def _many_rooms(request: web.Request, state: AppState) -> tuple[StreamQuery, Grant]:
    rooms = rooms_of(request, state.settings.max_rooms_per_stream)
    grant = await authorize_all(request, state, rooms, publish=False)
    query = StreamQuery.parse_multi(request, rooms, state.settings.history_max)
    for room in rooms:
        await check_room(state, room)
    return query, grant


async def _stream(
    request: web.Request, state: AppState, query: StreamQuery, grant: Grant
) -> web.StreamResponse:
    settings = state.settings
    delivery = state.delivery

    if state.draining:
        return await unavailable(request, state, "draining")
    if not state.broker.ready:
        return await unavailable(request, state, "broker_unavailable")
    if len(state.hub) >= settings.max_connections:
        return await unavailable(request, state, "max_connections")

    sub = Subscriber(
        query.rooms,
        settings.subscriber_buffer,
        filter=query.filter,
        transport=request.transport,
        owner=state.endings,
        expires_at=grant.expires_at,  # the kept grant's float: the sweep allows the leeway
        request_id=request_id(request),
        opened=time.monotonic(),
        cursor=Cursor(query.rooms, epoch_for(int(time.time() * 1000))) if query.multi else None,
    )
    # Registered (and its rooms subscribed) before history is read: whatever arrives
    # meanwhile waits in the buffer and is merged after the replay by id.
    state.hub.add(sub)
    state.metrics.connections.inc()
    state.metrics.rooms.set(state.hub.room_count)
    resp = LogStreamResponse(stream_headers(request, state), user_timeout=not state.listeners_timed)
    # A stream always ends with this side closing the connection; saying so up front keeps a
    # load balancer from putting it back in its keep-alive pool and sending a request down it.
    resp.force_close()
    try:
        await resp.prepare(request)
        try:
            await state.broker.listening(sub.rooms)
            async for piece, logs in replay(
                state.reads, settings, sub, query, delivery.started, delivery.known_newest
            ):
                await resp.write(piece)  # waits while the client's socket is full
                state.metrics.replayed.inc(logs)
        except BrokerUnavailable:
            state.metrics.rejected.labels(Ending.BROKER_UNAVAILABLE.reason).inc()
            sub.close(Ending.BROKER_UNAVAILABLE)
        transport = request.transport
        if sub.ending is None and transport is not None and not transport.is_closing():
            await hand_off(request, resp, sub, transport)
        elif sub.ending is not None:  # drained, expired or refused during the replay
            farewell = state.endings.farewell(sub.ending)
            if farewell is not None:
                await resp.write(farewell)
    except ConnectionError:
        pass  # the client left during the replay (aiohttp's ClientConnectionResetError too)
    finally:
        if sub.live is None:  # never live: this handler was the whole stream
            sub.close(Ending.CLIENT_GONE)
    return resp
