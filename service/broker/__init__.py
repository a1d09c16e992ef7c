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
    if settings.topology in ("sentinel", "cluster"):
        from ..settings import SettingsError

        variable = "REDIS_SENTINELS" if settings.redis_sentinels else "REDIS_CLUSTER_NODES"
        raise SettingsError(variable, "this build does not support it yet")
    if settings.redis_url:
        from .redis import RedisBroker

        return RedisBroker(settings, events)
    from .memory import MemoryBroker

    return MemoryBroker(settings, events)
