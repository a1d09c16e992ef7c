"""Brokers: Redis for many processes, memory for one (the embedded default)."""

from __future__ import annotations

from ..hub import Hub
from ..metrics import Metrics
from ..settings import Settings
from .base import (
    Broker,
    BrokerState,
    BrokerUnavailable,
    HistoryEntry,
    KeyReused,
    Published,
    Window,
)

__all__ = [
    "Broker",
    "BrokerState",
    "BrokerUnavailable",
    "HistoryEntry",
    "KeyReused",
    "Published",
    "Window",
    "create_broker",
]


def create_broker(settings: Settings, hub: Hub, metrics: Metrics) -> Broker:
    if settings.redis_url:
        from .redis import RedisBroker

        return RedisBroker(settings, hub, metrics)
    from .memory import MemoryBroker

    return MemoryBroker(settings, hub, metrics)
