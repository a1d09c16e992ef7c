"""What the handlers share, reachable through one typed `AppKey` (no globals)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from .auth import TokenVerifier
from .broker import Broker
from .delivery import Delivery
from .endings import Endings
from .hub import Hub
from .metrics import Metrics
from .settings import Settings
from .shared_reads import SharedReads


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
    # The listening sockets carry TCP_USER_TIMEOUT (`roomlogs serve`, Linux): every accepted
    # socket inherits it, and a stream need not set it on its own (tcp_options.py).
    listeners_timed: bool = False
    # The broker's reads of opening streams, identical ones sent once (a reconnect storm).
    reads: SharedReads = field(init=False)

    def __post_init__(self) -> None:
        self.reads = SharedReads(self.broker)


STATE: web.AppKey[AppState] = web.AppKey("roomlogs_state", AppState)
