"""Graceful drain on SIGTERM: not ready at once, streams closed in waves, then exit.

Closing every stream at the same instant would send every browser back through the load
balancer at once; waves spread the reconnects over most of `SHUTDOWN_TIMEOUT`, and each closed
stream gets a jittered `retry:` hint, so the other instances see a ramp, not a spike. Clients
resume by `Last-Event-ID` from history wherever they land.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random

from .endings import Ending
from .state import AppState

log = logging.getLogger("service")

WAVES = 10
SHARE_OF_TIMEOUT = 0.6  # the rest is left for handlers to finish their last writes


async def drain(state: AppState) -> None:
    state.draining = True
    state.metrics.worker_ready.set(0)
    subs = list(state.hub)
    random.shuffle(subs)
    budget = state.settings.shutdown_timeout * SHARE_OF_TIMEOUT
    waves = max(1, min(WAVES, len(subs)))
    size = math.ceil(len(subs) / waves) if subs else 0
    log.info("draining %d streams in %d waves over %.1fs", len(subs), waves, budget)
    for wave in range(waves):
        for sub in subs[wave * size : (wave + 1) * size]:
            sub.close(Ending.SHUTDOWN)
        if wave < waves - 1 and budget > 0:
            await asyncio.sleep(budget / waves)
    # Streams that arrived meanwhile were refused, but close any that slipped in.
    state.hub.close_all(Ending.SHUTDOWN)
