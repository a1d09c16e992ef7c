"""The tables of `bench.publish`: the loads, the latency, the Publisher, issue 14's goals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from ._common import fmt
from .pipes import Load
from .results import record_of

BATCH: Final = 100  # logs in one batch POST: the service's limit per request
HEALTHZ: Final = "GET /healthz"
POST_ONE: Final = "POST 1 log + Idempotency-Key"
POST_BATCH: Final = f"POST {BATCH} logs + Idempotency-Key"
NCHAN_POST: Final = "POST /pub/{room} 1 log"
PUBLISH: Final = "PUBLISH (plain)"
SCRIPT: Final = "EVALSHA publish script"


@dataclass
class PublisherRun:
    transport: str  # redis or http
    per_call: int  # 1: emit, else emit_many of that many logs
    concurrency: int  # calls in flight at once
    seconds: float
    logs_s: float
    process_core: float  # this process's CPU share over the run
    redis_core: float
    server_core: float = float("nan")  # roomlogs' (http only)
    errors: int = 0


@dataclass
class Report:
    loads: list[Load] = field(default_factory=list)
    latency: list[Load] = field(default_factory=list)
    publisher: list[PublisherRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def find(self, system: str, what: str) -> Load | None:
        return next((x for x in self.loads if x.system == system and x.what == what), None)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b:
        return None
    return a / b


@dataclass(frozen=True)
class Goal:
    what: str
    value: float | None
    spec: str  # how the value is shown
    goal: str
    met: bool | None


def goals(report: Report) -> list[Goal]:
    one = report.find("roomlogs", POST_ONE)
    health = report.find("roomlogs", HEALTHZ)
    nchan = report.find("nchan", NCHAN_POST)
    batch = report.find("roomlogs", POST_BATCH)
    lat = next((x for x in report.latency if x.system == "roomlogs"), None)
    # "By batching what is emitted": single-log `emit`s, batched by the Publisher itself (an
    # `emit_many` batch is the caller's).
    pubs = [p for p in report.publisher if p.transport == "redis" and p.per_call == 1]
    best = max(pubs, key=lambda p: p.logs_s) if pubs else None

    def at_least(v: float | None, g: float) -> bool | None:
        return None if v is None else v >= g

    def rate(x: Load | None) -> float | None:
        return None if x is None else x.requests_s

    r_health = ratio(rate(one), rate(health))
    r_nchan = ratio(rate(one), rate(nchan))
    batch_logs = batch.logs_s if batch else None
    p99 = lat.p99_ms if lat else None
    best_logs = best.logs_s if best else None
    return [
        Goal("single-log POST / same server's GET /healthz", r_health, ".2f", "≥ 0.7x",
             at_least(r_health, 0.7)),
        Goal("single-log POST / nchan's POST /pub", r_nchan, ".2f", "≥ 1x",
             at_least(r_nchan, 1.0)),
        Goal(f"{BATCH}-log POST, logs/s", batch_logs, ",.0f", "≥ 150,000",
             at_least(batch_logs, 150_000)),
        Goal("p99 ms of single-log POST at half its max rate", p99, ".2f", "< 5 ms",
             None if p99 is None else p99 < 5),
        Goal(
            "Publisher logs/s, one process, single-log `emit`s"
            + (f" ({best.concurrency} at once)" if best else ""),
            best_logs, ",.0f", "≥ 50,000", at_least(best_logs, 50_000),
        ),
    ]  # fmt: skip


def _met(met: bool | None) -> str:
    return "n/a" if met is None else ("yes" if met else "**no**")


def markdown(report: Report) -> str:
    out = [
        "### Publishing: max rate (closed loop)",
        "",
        "| system | request | conns x depth | requests/s | logs/s | server core | "
        "server µs / request | load gen core | redis core | p50 / p99 ms (queued) | errors |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for x in report.loads:
        out.append(
            f"| {x.system} | {x.what} | {x.conns} x {x.depth} | {x.requests_s:,.0f} | "
            f"{fmt(x.logs_s if x.per_request else None, ',.0f')} | {x.server_core:.0%} | "
            f"{x.server_us:.1f} | {x.loadgen_core:.0%} | {x.redis_core:.0%} | "
            f"{x.p50_ms:.2f} / {x.p99_ms:.2f} | {x.errors} |"
        )
    out += [
        "",
        "### Publish latency at half the max rate (open loop)",
        "",
        "| system | request | offered / s | answered / s | server core | p50 ms | p99 ms | "
        "p99.9 ms | max ms | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for x in report.latency:
        out.append(
            f"| {x.system} | {x.what} | {fmt(x.offered_s, ',.0f')} | {x.requests_s:,.0f} | "
            f"{x.server_core:.0%} | {x.p50_ms:.2f} | {x.p99_ms:.2f} | {x.p999_ms:.2f} | "
            f"{x.max_ms:.2f} | {x.errors} |"
        )
    out += [
        "",
        "### `service.publisher.Publisher`, one process (the load generator's, core 1)",
        "",
        "| transport | call | at once | logs/s | process core | redis core | roomlogs core | "
        "errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for p in report.publisher:
        call = "emit" if p.per_call == 1 else f"emit_many x{p.per_call}"
        out.append(
            f"| {p.transport} | {call} | {p.concurrency} | {p.logs_s:,.0f} | "
            f"{p.process_core:.0%} | {p.redis_core:.0%} | {fmt(p.server_core, '.0%')} | "
            f"{p.errors} |"
        )
    out += ["", "### Issue 14's goals (publishing)", "", "| ratio | value | goal | met |",
            "|---|---:|---|---|"]  # fmt: skip
    for g in goals(report):
        out.append(f"| {g.what} | {fmt(g.value, g.spec)} | {g.goal} | {_met(g.met)} |")
    if report.notes:
        out += ["", *[f"- {n}" for n in report.notes]]
    return "\n".join(out)


def report_of(doc: dict[str, Any]) -> Report:
    """The report back from a result JSON (or a journal entry): what `markdown` reads."""
    return Report(
        loads=[record_of(Load, x) for x in doc.get("loads", [])],
        latency=[record_of(Load, x) for x in doc.get("latency", [])],
        publisher=[record_of(PublisherRun, p) for p in doc.get("publisher", [])],
        notes=list(doc.get("notes", [])),
    )
