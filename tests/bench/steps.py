"""Records to test with: a `Step` with plausible values, any of them overridden."""

from __future__ import annotations

from typing import Any

from bench.records import Latency, Step


def make_step(**overrides: Any) -> Step:
    fields: dict[str, Any] = {
        "rate_logs": 100.0,
        "offered": 100_000.0,
        "sent": 300,
        "expected": 300_000,
        "delivered": 300_000,
        "achieved": 99_500.0,
        "lag_s": 0.01,
        "lag_limit_s": 0.5,
        "complete": True,
        "sustained": True,
        "server_cpu_us_per_delivery": 2.5,
        "publish_rate": 100.0,
        "server_core": 0.40,
        "loadgen_core": 0.50,
        "redis_core": 0.05,
        "cores": {0: 0.42, 1: 0.57},
        "other_server_core": 0.02,
        "other_client_core": 0.02,
        "reads_per_delivery": 0.1,
        "latency": Latency(samples=1000, p50_ms=2.0, p90_ms=4.0, p99_ms=8.0, max_ms=9.0),
        "dead_streams": 0,
    }
    fields.update(overrides)
    return Step(**fields)
