"""Issue 4's targets: roomlogs' ratios to the minimal server and nchan, memory per idle stream,
and one Redis subscription per worker, each with its goal and whether it is met."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ._common import MISSING, fmt
from .records import Run, find_run


@dataclass
class Target:
    what: str
    roomlogs: float
    reference: float
    reference_name: str
    ratio: float
    goal: str
    met: bool | None


def targets(runs: Sequence[Run], key_case: str, rooms_case: str | None) -> list[Target]:
    """The targets over `key_case` (1 x 1,000) and `rooms_case` (1,000 x 2)."""
    out: list[Target] = []

    def ratio_row(
        what: str, case: str, ref: str, goal: float, higher: bool, value: Callable[[Run], float]
    ) -> None:
        mine, theirs = find_run(runs, "roomlogs", case), find_run(runs, ref, case)
        a = value(mine) if mine else math.nan
        b = value(theirs) if theirs else math.nan
        ratio = a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan
        met = None if math.isnan(ratio) else (ratio >= goal if higher else ratio <= goal)
        sign = "≥" if higher else "≤"
        out.append(Target(what, a, b, ref, ratio, f"{sign} {goal:g}x", met))

    def p99(r: Run) -> float:
        lat = r.latency
        return lat.p99_ms if lat else math.nan

    def best(r: Run) -> float:
        return r.best

    ratio_row(f"{key_case} deliveries/s vs minimal", key_case, "minimal", 0.5, True, best)
    ratio_row(f"{key_case} deliveries/s vs nchan", key_case, "nchan", 2.0, True, best)
    ratio_row(f"{key_case} p99 latency vs minimal", key_case, "minimal", 1.25, False, p99)
    if rooms_case:
        ratio_row(f"{rooms_case} deliveries/s vs minimal", rooms_case, "minimal", 0.8, True, best)
    idle = find_run(runs, "roomlogs", "idle")
    if idle is not None:
        kib = idle.rss_per_stream_kib
        nchan = find_run(runs, "nchan", "idle")
        out.append(
            Target(
                f"KiB per idle stream ({idle.streams:,} streams)",
                kib,
                nchan.rss_per_stream_kib if nchan else math.nan,
                "nchan",
                kib / 8.0,
                "≤ 8 KiB",
                None if math.isnan(kib) else kib <= 8.0,
            )
        )
    per_worker = [
        subs / max(1, r.workers)
        for r in runs
        if r.system.startswith("roomlogs") and (subs := r.redis_subscriptions) is not None
    ]
    if per_worker:
        worst = max(per_worker)
        out.append(
            Target(
                "Redis subscriptions per worker (any case)",
                worst,
                math.nan,
                "",
                worst,
                "= 1",
                worst == 1,
            )
        )
    return out


def targets_table(rows: Sequence[Target]) -> str:
    head = ["target (issue 4)", "roomlogs", "reference", "ratio", "goal", "met"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in rows:
        ref = f"{t.reference_name} {fmt(t.reference, ',.1f')}" if t.reference_name else ""
        met = MISSING if t.met is None else ("yes" if t.met else "**no**")
        ratio = fmt(t.ratio, ".2f") + "x" if "KiB" not in t.what and t.reference_name else ""
        out.append(f"| {t.what} | {fmt(t.roomlogs, ',.1f')} | {ref} | {ratio} | {t.goal} | {met} |")
    return "\n".join(out)
