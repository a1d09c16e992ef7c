"""The tables of `bench.storm`: every storm, per system, and issue 14's goals (reconnecting)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ._common import MISSING, fmt
from .results import record_of

GOAL_HANDSHAKES: Final = 5000.0  # per second, on one core, with auth and resume
GOAL_KIB: Final = 1.2  # per idle stream


@dataclass
class StormRun:
    """One storm: every stream aborted at once, then all reconnecting."""

    streams: int
    behind: int  # streams that resumed behind the newest log
    seconds: float  # storm start → the last handshake done
    handshakes_s: float
    p50_ms: float  # one stream's handshake: request sent → subscribed and caught up
    p99_ms: float
    server_core: float
    server_us: float  # server CPU per handshake
    loadgen_core: float
    redis_core: float
    exact: int  # streams that got exactly what they missed (no loss, no duplicate)
    live: int  # streams that got the log published after the storm
    retries: int  # connection attempts that failed and were retried
    retry_reasons: dict[str, int] = field(default_factory=dict)  # why, how many times
    round: int = 0

    def line(self) -> str:
        return (
            f"storm {self.round}: {self.streams:,} handshakes in {self.seconds:.2f}s = "
            f"{self.handshakes_s:,.0f}/s (p50 {self.p50_ms:.0f} ms, p99 {self.p99_ms:.0f} ms), "
            f"server {self.server_core:.0%} ({self.server_us:.0f} µs each), load gen "
            f"{self.loadgen_core:.0%}, redis {self.redis_core:.0%}; exact {self.exact:,}, "
            f"live {self.live:,}, retries {self.retries}"
            + (f" {self.retry_reasons}" if self.retry_reasons else "")
        )


@dataclass
class SystemRun:
    system: str
    label: str
    streams: int
    resumes: bool  # takes Last-Event-ID
    auth: bool  # verifies a token per stream
    connect_s: float = float("nan")  # the first opening, `--connect-concurrency` at a time
    rss_before_kib: int = 0
    rss_after_kib: int = 0
    rss_per_stream_kib: float = float("nan")
    storms: list[StormRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def handshakes_s(self) -> float | None:
        """The median storm's rate."""
        return statistics.median(s.handshakes_s for s in self.storms) if self.storms else None

    @property
    def median(self) -> StormRun | None:
        if not self.storms:
            return None
        ordered = sorted(self.storms, key=lambda s: s.handshakes_s)
        return ordered[len(ordered) // 2]


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _met(met: bool | None) -> str:
    return MISSING if met is None else ("yes" if met else "**no**")


def markdown(runs: Sequence[SystemRun]) -> str:
    out = [
        "### Reconnect storm (median storm per system)",
        "",
        "| system | streams | auth | resume | first opening s | KiB / idle stream | storms | "
        "storm s | handshakes/s | p50 / p99 ms per stream | server core | server µs / "
        "handshake | load gen core | redis core | exact replay | live after | retries |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        m = r.median
        if m is None:
            failed = any(n.startswith("failed") for n in r.notes)
            out.append(
                f"| {r.system} | {r.streams:,} | {_yes(r.auth)} | {_yes(r.resumes)} | "
                f"{fmt(r.connect_s, '.1f')} | {fmt(r.rss_per_stream_kib, '.2f')} | "
                + ("0, **failed** (notes) |" if failed else "0 |")
                + " n/a |" * 11
            )
            continue
        out.append(
            f"| {r.system} | {r.streams:,} | {_yes(r.auth)} | {_yes(r.resumes)} | "
            f"{r.connect_s:.1f} | {r.rss_per_stream_kib:.2f} | {len(r.storms)} | "
            f"{m.seconds:.2f} | {m.handshakes_s:,.0f} | {m.p50_ms:.0f} / {m.p99_ms:.0f} | "
            f"{m.server_core:.0%} | {m.server_us:.0f} | {m.loadgen_core:.0%} | "
            f"{m.redis_core:.0%} | {m.exact:,} of {m.streams:,} ({m.behind:,} behind) | "
            f"{m.live:,} | {m.retries} |"
        )
    if any(len(r.storms) > 1 for r in runs):
        out += ["", "Every storm: " + "; ".join(
            f"{r.system} " + ", ".join(f"{s.handshakes_s:,.0f}/s" for s in r.storms)
            for r in runs if r.storms
        )]  # fmt: skip
    by = {r.system: r for r in runs}
    ours = by.get("roomlogs")
    rate = ours.handshakes_s if ours else None

    def vs(key: str) -> float | None:
        other = by.get(key)
        theirs = other.handshakes_s if other else None
        return None if rate is None or not theirs else rate / theirs

    # NaN when roomlogs failed before its streams were open: not measured, not a miss.
    kib = ours.rss_per_stream_kib if ours and not math.isnan(ours.rss_per_stream_kib) else None
    rows = [
        ("roomlogs handshakes/s, auth + resume, one core", fmt(rate, ",.0f"), "≥ 5,000/s",
         None if rate is None else rate >= GOAL_HANDSHAKES),
        ("roomlogs / minimal handshakes/s", fmt(vs("minimal"), ".2f"), "(reference)", None),
        ("roomlogs / nchan handshakes/s", fmt(vs("nchan"), ".2f"), "(reference)", None),
        ("roomlogs KiB per idle stream", fmt(kib, ".2f"), "≤ 1.2 KiB",
         None if kib is None else kib <= GOAL_KIB),
    ]  # fmt: skip
    out += ["", "### Issue 14's goals (reconnecting)", "", "| ratio | value | goal | met |",
            "|---|---:|---|---|"]  # fmt: skip
    out += [f"| {a} | {b} | {c} | {_met(d)} |" for a, b, c, d in rows]
    notes = [f"{r.system}: {n}" for r in runs for n in r.notes]
    notes += [
        f"{r.system}, storm {s.round}: retried "
        + ", ".join(f"{why} x{count}" for why, count in s.retry_reasons.items())
        for r in runs
        for s in r.storms
        if s.retry_reasons
    ]
    if notes:
        out += ["", *[f"- {n}" for n in notes]]
    return "\n".join(out)


def runs_of(doc: dict[str, Any]) -> list[SystemRun]:
    """The systems' runs back from a result JSON (or a journal entry): what `markdown` reads."""
    runs = []
    for raw in doc.get("systems", []):
        run = record_of(SystemRun, raw)
        run.storms = [record_of(StormRun, s) for s in raw.get("storms", [])]
        runs.append(run)
    return runs
