"""Prometheus metrics (prometheus-client), correct with several worker processes.

With `WORKERS>1` the parent sets `PROMETHEUS_MULTIPROC_DIR` before starting the workers, so
every worker writes its values to shared files and `/metrics`, whichever worker answers,
reports the sum over all of them (counters, histograms, and "live" gauges of running workers).
The metric objects live in a private registry per app, so tests and embedded apps never collide.
"""

from __future__ import annotations

import asyncio
import glob
import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector


class Metrics:
    def __init__(self) -> None:
        r = CollectorRegistry(auto_describe=True)
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        if self.multiprocess:
            # What /metrics exposes: every worker's files, aggregated.
            self.registry = CollectorRegistry()
            MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
        else:
            self.registry = r
        self.connections = Gauge(
            "roomlogs_connections", "Open SSE streams", multiprocess_mode="livesum", registry=r
        )
        self.rooms = Gauge(
            "roomlogs_rooms",
            "Rooms with at least one stream (summed over workers)",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.loop_tasks = Gauge(
            "roomlogs_loop_tasks",
            "asyncio tasks alive (summed over workers); a per-connection leak shows up here",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.subscribed_rooms = Gauge(
            "roomlogs_redis_subscribed_rooms",
            "Rooms whose SUBSCRIBE Redis confirmed (SUBSCRIBE_MODE=rooms; summed over workers); "
            "above roomlogs_rooms by the rooms lingering after their last stream",
            multiprocess_mode="livesum",
            registry=r,
        )
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
        self.broker_down = Counter(
            "roomlogs_broker_subscription_losses",
            "Broker subscriptions given up: lost (a connection error) or stalled (silent, and "
            "no answer to the liveness probe)",
            ["kind"],
            registry=r,
        )
        # Per worker (its pid a label): the container is ready only when every worker is.
        self.worker_ready = Gauge(
            "roomlogs_worker_ready",
            "1 while this worker's broker subscription is live and it is not draining",
            multiprocess_mode="liveall",
            registry=r,
        )
        self.worker_ready.set(0)
        self.broker_up = Gauge(
            "roomlogs_broker_up",
            "1 while the broker subscription is live (the lowest over workers)",
            multiprocess_mode="livemin",
            registry=r,
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
        self.request_head_timeouts = Counter(
            "roomlogs_request_head_timeouts",
            "Connections closed for not sending a whole request head within REQUEST_HEAD_TIMEOUT",
            registry=r,
        )
        self.rejected = Counter(
            "roomlogs_rejected_requests", "Requests refused, by reason", ["reason"], registry=r
        )
        self.replayed = Counter(
            "roomlogs_replayed_events", "Events sent from history on connect", registry=r
        )
        self.gaps = Counter(
            "roomlogs_live_gaps",
            "Catch-ups that found logs trimmed before a room's streams had them (each told)",
            registry=r,
        )
        self.plain_logs = Counter(
            "roomlogs_plain_logs",
            "Plain PUBLISH logs received, by outcome: stored here, claimed (stored by another "
            "gateway), or not stored (backlog, unavailable, unknown, error)",
            ["outcome"],
            registry=r,
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

    def refresh(self, events: int, size: int, subscribed_rooms: int = 0) -> None:
        """Bring scrape-time values up to date: tasks, the broker's subscribed rooms, and what
        live streams were sent."""
        self.loop_tasks.set(loop_tasks())
        self.subscribed_rooms.set(subscribed_rooms)
        if events:
            self.events_sent.inc(events)
            self.bytes_sent.inc(size)


def workers_ready() -> tuple[int, int] | None:
    """With WORKERS>1: how many living workers have reported, and how many of them are
    ready (read from their files in PROMETHEUS_MULTIPROC_DIR); None for one process."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return None
    files = glob.glob(os.path.join(path, "gauge_liveall_*.db"))
    reported = ready = 0
    for metric in MultiProcessCollector.merge(files, accumulate=False):  # type: ignore[no-untyped-call]
        if metric.name == "roomlogs_worker_ready":
            for sample in metric.samples:
                reported += 1
                ready += sample.value == 1
    return reported, ready


def loop_tasks() -> int:
    """Tasks alive on the running loop."""
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # no running loop
        return 0
