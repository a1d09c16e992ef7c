"""What the handlers share, reachable through one typed `AppKey` (no globals)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from .auth import TokenVerifier
from .broker import Broker
from .hub import Hub
from .metrics import Metrics
from .settings import Settings


@dataclass(slots=True)
class AppState:
    settings: Settings
    hub: Hub
    broker: Broker
    verifier: TokenVerifier
    metrics: Metrics
    # The ephemeral dev secret when no key is configured (None otherwise).
    dev_secret: str | None = None
    draining: bool = False
    started: dict[str, float] = field(default_factory=dict)


STATE: web.AppKey[AppState] = web.AppKey("roomlogs_state", AppState)
