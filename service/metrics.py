"""Prometheus metrics, one registry per app (so tests and embedded apps never collide).

Gauges that describe the hub (connections, rooms, event-loop tasks) are read at scrape time by a
collector, so they cost nothing on the hot path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class _ScrapeTimeGauges(Collector):
    def __init__(self, read: Callable[[], dict[str, tuple[str, float]]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        for name, (doc, value) in self._read().items():
            yield GaugeMetricFamily(name, doc, value=value)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.broker_messages = Counter(
            "roomlogs_broker_messages", "Messages received from the broker", registry=r
        )
        self.broker_invalid = Counter(
            "roomlogs_broker_invalid_messages",
            "Broker messages skipped, by reason",
            ["reason"],
            registry=r,
        )
        self.broker_reconnects = Counter(
            "roomlogs_broker_reconnects", "Broker subscription reconnects", registry=r
        )
        self.broker_up = Gauge(
            "roomlogs_broker_up", "1 while the broker subscription is live", registry=r
        )
        self.events_sent = Counter(
            "roomlogs_events_sent", "SSE events written to clients", registry=r
        )
        self.bytes_sent = Counter("roomlogs_bytes_sent", "SSE bytes written to clients", registry=r)
        self.slow_consumers = Counter(
            "roomlogs_slow_consumer_closes",
            "Streams closed because their buffer filled",
            registry=r,
        )
        self.rejected = Counter(
            "roomlogs_rejected_requests", "Requests refused, by reason", ["reason"], registry=r
        )
        self.replayed = Counter(
            "roomlogs_replayed_events", "Events sent from history on connect", registry=r
        )
        self.published = Counter(
            "roomlogs_published_logs", "Logs stored and published through this instance", registry=r
        )
        self.latency = Histogram(
            "roomlogs_publish_to_send_seconds",
            "From the stream id's time to the write to the client",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )

    def watch(self, read: Callable[[], dict[str, tuple[str, float]]]) -> None:
        self.registry.register(_ScrapeTimeGauges(read))


def loop_tasks() -> int:
    """Tasks alive on the running loop: a leak of per-connection tasks shows up here."""
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # no running loop (registration time)
        return 0
