"""The one timer of the process: heartbeats, token expiry, the client-gone sweep, metrics.

No stream has a timer or a task of its own; this tick walks them all once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Final

from aiohttp import web

from .events import heartbeat_frame
from .state import STATE, AppState

SWEEP_INTERVAL: Final = 1.0  # seconds between checks for clients that left without a word


async def housekeeping_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_housekeeping(app[STATE]), name="roomlogs-housekeeping")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def refresh_metrics(state: AppState) -> None:
    """Bring scrape-time values up to date (also done by `/metrics` before it answers)."""
    subscribed = getattr(state.broker, "subscribed_rooms", 0)  # a per-room subscriber's
    state.metrics.refresh(*state.hub.collect_sent(), subscribed)


async def _housekeeping(state: AppState) -> None:
    loop = asyncio.get_running_loop()
    interval = state.settings.heartbeat_interval
    tick = min(SWEEP_INTERVAL, interval)
    next_beat = loop.time() + interval
    while True:
        await asyncio.sleep(tick)
        # Streams keep their token's `exp` (the verified grant's own float, not a sum of their
        # own: 32 bytes a stream); the clock skew allowed is taken off the clock instead.
        state.hub.sweep(time.time() - state.settings.jwt_leeway)
        refresh_metrics(state)
        if loop.time() >= next_beat:
            next_beat = loop.time() + interval
            state.hub.control(heartbeat_frame())
