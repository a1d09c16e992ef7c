"""`bench.plain`'s records, checks and tables, from records only (no processes): a phase (one
feed with G gateways), the exactly-once check of one stream and of a phase, the Markdown, and
a phase read back from a result JSON (for the journal)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from service.broker.plain import CLAIM_TTL
from service.ids import StreamKey, parse_id

from ._common import NOISY, fmt
from .records import Latency
from .report import table
from .results import _latency

FEEDS: Final = ("script", "plain")
LABELS: Final = {"script": "publish script", "plain": "plain PUBLISH"}


@dataclass
class Phase:
    """One feed with G gateways: the table's figures and what the checks read."""

    feed: str  # script | plain
    gateways: int
    streams: int
    rate: float  # offered logs/s
    sent: int = 0
    publish_rate: float = math.nan  # logs/s achieved
    sustained: bool = False  # the rate step's verdict (every log, lag, p99 under 500 ms)
    latency: Latency | None = None
    redis_floor: Latency | None = None  # a plain Redis subscriber on the channel (script)
    redis_us_per_log: float = math.nan  # INFO cpu: used_cpu_user + used_cpu_sys
    # INFO commandstats: each command's calls per log, and µs per call (a script's includes
    # the commands it calls, which are counted too; the rest of the CPU is I/O).
    commands_per_log: dict[str, float] = field(default_factory=dict)
    command_us: dict[str, float] = field(default_factory=dict)
    gateways_us_per_log: float = math.nan  # /proc utime + stime, all G gateways
    # Each gateway's, the first (the streams') first: its process's share of the above.
    each_gateway_us_per_log: list[float] = field(default_factory=list)
    gateways_core: float = math.nan
    redis_core: float = math.nan
    loadgen_core: float = math.nan
    other_load: float = math.nan  # other processes' share of the busier core
    idle_gateways_core: float = math.nan  # all G, before the phases, no stream open
    idle_redis_core: float = math.nan
    history: int = -1  # XLEN room:R:history
    claim_keys: int = -1  # room:R:plain:* at the end of the phase
    keys: int = -1  # DBSIZE
    used_memory_delta: int = 0  # bytes
    exact_streams: int = 0  # streams with every log once, in order, with growing ids
    problem: str | None = None  # the first stream's problem
    error: str | None = None


# -- the checks and the tables -----------------------------------------------------------


def stream_problem(logs: Sequence[tuple[str | None, int]], first: int, count: int) -> str | None:
    """What is wrong with one stream's logs, as (SSE id, metadata.seq) in the order they came.
    It should have seq `first` ... `first + count - 1`, each once, in order, each with an id
    above the one before. None when it does."""
    seqs = [seq for _, seq in logs]
    if seqs != list(range(first, first + count)):
        got, want = set(seqs), set(range(first, first + count))
        missing, extra, repeated = len(want - got), len(got - want), len(seqs) - len(got)
        if missing or extra or repeated:
            return (
                f"{len(seqs)} logs of {count}: {missing} missing, {repeated} repeated, "
                f"{extra} not sent"
            )
        return "logs out of order"
    previous: StreamKey | None = None
    for ident, seq in logs:
        key = None if ident is None else parse_id(ident)
        if key is None:
            return f"log {seq} without a stream id ({ident!r})"
        if previous is not None and key <= previous:
            return f"log {seq}: id {ident} is not above the one before"
        previous = key
    return None


def problems(phase: Phase) -> list[str]:
    """The checks' verdict on a phase: empty when every one holds."""
    name = f"{phase.feed}, {phase.gateways} gateway(s)"
    if phase.error is not None:
        return [f"{name}: {phase.error}"]
    out = []
    if phase.sent <= 0:
        out.append(f"{name}: no log was sent")
    if phase.exact_streams != phase.streams:
        out.append(
            f"{name}: {phase.streams - phase.exact_streams} of {phase.streams} streams did not "
            f"get every log once, in order, with an id ({phase.problem})"
        )
    if phase.history != phase.sent:
        out.append(f"{name}: XLEN room:R:history is {phase.history}, {phase.sent} logs sent")
    return out


def _ms(lat: Latency | None, which: str) -> str:
    return fmt(getattr(lat, which), ".2f") if lat is not None else fmt(None, "")


def _delta(a: float | None, b: float | None, spec: str) -> str:
    if a is None or b is None or math.isnan(a) or math.isnan(b):
        return fmt(None, spec)
    return format(a - b, "+" + spec)


def plain_markdown(phases: Sequence[Phase], pinning: str) -> str:
    """The phases' table, plain minus script per number of gateways, and the notes."""
    head = [
        "publish", "gateways", "logs/s", "p50 ms", "p90 ms", "p99 ms", "Redis µs CPU / log",
        "gateways µs CPU / log", "history entries / sent", "streams: each log once, in order",
        "claim keys", "Redis memory Δ KiB",
    ]  # fmt: skip
    rows = [
        [
            LABELS.get(p.feed, p.feed),
            str(p.gateways),
            fmt(p.publish_rate, ",.0f"),
            _ms(p.latency, "p50_ms"),
            _ms(p.latency, "p90_ms"),
            _ms(p.latency, "p99_ms"),
            fmt(p.redis_us_per_log, ".1f"),
            fmt(p.gateways_us_per_log, ".1f"),
            f"{p.history:,} / {p.sent:,}",
            f"{p.exact_streams} / {p.streams}",
            f"{p.claim_keys:,}" if p.claim_keys >= 0 else fmt(None, ""),
            fmt(p.used_memory_delta / 1024, ",.0f"),
        ]
        for p in phases
    ]
    out = ["### Plain PUBLISH against the publish script", "", *table(head, rows), ""]
    by = {(p.feed, p.gateways): p for p in phases}
    extra = []
    for g in sorted({p.gateways for p in phases}):
        s, p = by.get(("script", g)), by.get(("plain", g))
        if s is None or p is None or s.latency is None or p.latency is None:
            continue
        claim = (p.used_memory_delta - s.used_memory_delta) / p.claim_keys if p.claim_keys else None
        extra.append(
            [
                str(g),
                *(_delta(getattr(p.latency, k), getattr(s.latency, k), ".2f") for k in
                  ("p50_ms", "p90_ms", "p99_ms")),
                _delta(p.redis_us_per_log, s.redis_us_per_log, ".1f"),
                _delta(p.gateways_us_per_log, s.gateways_us_per_log, ".1f"),
                fmt(claim, ",.0f"),
            ]
        )  # fmt: skip
    if extra:
        head = ["gateways", "Δ p50 ms", "Δ p90 ms", "Δ p99 ms", "Δ Redis µs / log",
                "Δ gateways µs / log", "Redis bytes / claim key"]  # fmt: skip
        out += ["#### plain PUBLISH minus publish script", "", *table(head, extra), ""]
    notes = [f"pinning: {pinning}; one room, the streams on the first gateway"]
    for p in phases:
        if p.feed == FEEDS[0] and p.redis_floor is not None:
            notes.append(
                f"{p.gateways} gateway(s): idle, all gateways {fmt(p.idle_gateways_core, '.1%')}"
                f" of a core (≈ {fmt(p.idle_gateways_core / p.rate * 1e6, '.1f')} µs per log at "
                f"{p.rate:,.0f} logs/s, counted in the CPU per log), Redis "
                f"{fmt(p.idle_redis_core, '.1%')}; a plain Redis subscriber's p50 / p99 "
                f"{p.redis_floor.p50_ms:.2f} / {p.redis_floor.p99_ms:.2f} ms"
            )
        if len(p.each_gateway_us_per_log) > 1:
            each = " / ".join(f"{us:.0f}" for us in p.each_gateway_us_per_log)
            notes.append(f"{p.feed}, {p.gateways}: µs CPU / log of each gateway: {each}")
        if p.commands_per_log:
            mix = ", ".join(
                f"{name} {calls:.2f} ({p.command_us.get(name, math.nan):.1f} µs)"
                for name, calls in sorted(p.commands_per_log.items(), key=lambda kv: -kv[1])
                if calls >= 0.01
            )
            notes.append(f"{p.feed}, {p.gateways}: Redis calls per log (µs each): {mix}")
        if not math.isnan(p.other_load) and p.other_load >= NOISY:
            notes.append(f"{p.feed}, {p.gateways}: other processes used {p.other_load:.0%}")
        if p.error is None and not p.sustained:
            notes.append(f"{p.feed}, {p.gateways}: the rate step was not sustained")
    notes.append(
        f"claim keys live {CLAIM_TTL} s after a payload's last copy: about rate x {CLAIM_TTL} "
        "of them in steady state"
    )
    found = [x for p in phases for x in problems(p)]
    notes += [f"CHECK FAILED: {x}" for x in found] or [
        "checks: every stream got every log once, in order, with an id; history = sent"
    ]
    return "\n".join([*out, "Notes:", *(f"- {n}" for n in notes)])


def phase_of(raw: dict[str, Any]) -> Phase:
    """A phase of a result JSON (null: a float that was not measured)."""
    fields = {k: v for k, v in raw.items() if k in Phase.__dataclass_fields__}
    for k, spec in Phase.__dataclass_fields__.items():
        if spec.type == "float" and k in fields:
            fields[k] = math.nan if fields[k] is None else float(fields[k])
    for k in ("latency", "redis_floor"):
        fields[k] = _latency(raw.get(k))
    return Phase(**fields)


def phases_of(doc: dict[str, Any]) -> list[Phase]:
    return [phase_of(raw) for raw in doc.get("phases", [])]


def line(p: Phase) -> str:
    """The progress line of a phase."""
    if p.error is not None:
        return f"  {p.feed}: FAILED {p.error}"
    lat = p.latency
    return (
        f"  {p.feed:6} {p.publish_rate:6.0f} logs/s p50/p99 {_ms(lat, 'p50_ms')}/"
        f"{_ms(lat, 'p99_ms')} ms redis {p.redis_us_per_log:5.1f} µs/log gateways "
        f"{p.gateways_us_per_log:5.1f} µs/log (cores {fmt(p.gateways_core, '.0%')}, redis "
        f"{fmt(p.redis_core, '.0%')}, load generator {fmt(p.loadgen_core, '.0%')}) history "
        f"{p.history}/{p.sent} streams {p.exact_streams}/{p.streams} claims {p.claim_keys}"
        + (f" other load {p.other_load:.0%}" if p.other_load >= NOISY else "")
    )
