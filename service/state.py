"""What the handlers share, reachable through one typed `AppKey` (no globals)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from .auth import TokenVerifier
from .broker import Broker
from .delivery import Delivery
from .endings import Endings
from .hub import Hub
from .metrics import Metrics
from .settings import Settings


@dataclass(slots=True)
class AppState:
    settings: Settings
    hub: Hub
    broker: Broker
    delivery: Delivery
    endings: Endings
    verifier: TokenVerifier
    metrics: Metrics
    # The ephemeral dev secret when no key is configured (None otherwise).
    dev_secret: str | None = None
    draining: bool = False


STATE: web.AppKey[AppState] = web.AppKey("roomlogs_state", AppState)
