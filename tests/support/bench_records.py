"""Records to test with: a `Step` with plausible values (any of them overridden), and the runs
of a small `bench.compare`."""

from __future__ import annotations

from typing import Any

from bench.records import Case, Latency, Run, Step


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


CASES = [Case("1x1000", 1, 1000), Case("10x2", 10, 2), Case("idle", 1, 500, idle=True)]


def run(system: str, case: str, best: float | None, **fields: object) -> Run:
    label = {"roomlogs": "roomlogs", "minimal": "minimal uvloop server", "nchan": "nchan"}[system]
    rooms, per_room = (10, 2) if case == "10x2" else (1, 1000 if case == "1x1000" else 500)
    r = Run(
        system=system,
        label=label,
        case=case,
        rooms=rooms,
        per_room=per_room,
        streams=rooms * per_room,
        limit="server CPU",
        rss_per_stream_kib=2.0,
        redis_subscriptions=None if system == "nchan" else 1,
    )
    if best is not None:
        r.max_sustained = make_step(achieved=best)
        r.steps = [r.max_sustained]
        r.latency_step = make_step(server_cpu_us_per_delivery=7.0, rate_logs=20.0)
        r.latency_rate_logs = 20.0
    for key, value in fields.items():
        setattr(r, key, value)
    return r


def sample_runs() -> list[Run]:
    return [
        run("roomlogs", "1x1000", 4_000_000),
        run("minimal", "1x1000", 5_000_000),
        run("nchan", "1x1000", 200_000),
        run("roomlogs", "10x2", 80_000),
        run("minimal", "10x2", 120_000, notes=["other processes used up to 20% of a core"]),
        run("nchan", "10x2", 60_000),
        run("roomlogs", "idle", None, rss_per_stream_kib=1.8),
        run("minimal", "idle", None, rss_per_stream_kib=1.4),
        run("nchan", "idle", None, rss_per_stream_kib=10.0),
    ]
