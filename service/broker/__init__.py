"""Brokers: Redis for many processes, memory for one (the embedded default)."""

from __future__ import annotations

from ..settings import Settings
from .base import (
    Broker,
    BrokerEvents,
    BrokerState,
    BrokerUnavailable,
    HistoryEntry,
    PublishOutcomeUnknown,
    Window,
)
from .script import KeyReused, Published

__all__ = [
    "Broker",
    "BrokerEvents",
    "BrokerState",
    "BrokerUnavailable",
    "HistoryEntry",
    "KeyReused",
    "PublishOutcomeUnknown",
    "Published",
    "Window",
    "create_broker",
]


def create_broker(settings: Settings, events: BrokerEvents) -> Broker:
    if settings.topology == "cluster":
        from .cluster import ClusterBroker

        return ClusterBroker(settings, events)
    if settings.topology in ("redis", "sentinel"):  # Sentinel: the same broker, its pool found
        from .redis import RedisBroker

        return RedisBroker(settings, events)
    from .memory import MemoryBroker

    return MemoryBroker(settings, events)
