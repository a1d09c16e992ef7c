"""The Markdown tables both commands print, from records only (bench/README.md says what each
column means): `bench.fanout`'s one table, and `bench.compare`'s summary, targets, WORKERS=2
and every-case tables."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from ._common import MISSING, fmt
from .records import Case, Latency, Run, Step, find_run
from .targets import targets, targets_table

ORDER = ("roomlogs", "minimal", "nchan", "tutorial")  # the systems' order in the tables


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(cells) + " |" for cells in rows]
    return out


def _logs_per_read(step: Step) -> str:
    return fmt(1 / max(step.reads_per_delivery, 1e-9), ".1f")


def _client(step: Step) -> str:
    return f"{step.loadgen_core:.0%} + redis {step.redis_core:.0%}"


def _floor(run: Run) -> str:
    f = run.redis_floor
    return f"{f.p50_ms:.2f} / {f.p99_ms:.2f}" if f else MISSING


# -- bench.fanout ---------------------------------------------------------------------------


def _fanout_columns() -> list[tuple[str, Callable[[Run], str]]]:
    """The table: a header and how to fill it in, per column."""

    def at_max(cell: Callable[[Step], str]) -> Callable[[Run], str]:
        return lambda r: cell(r.max_sustained) if r.max_sustained else MISSING

    def in_latency_phase(cell: Callable[[Step, Latency], str]) -> Callable[[Run], str]:
        def fill(r: Run) -> str:
            step = r.latency_step
            return cell(step, step.latency) if step and step.latency else MISSING

        return fill

    return [
        ("streams", lambda r: f"{r.streams:,}"),
        ("connect s", lambda r: fmt(r.connect_s, ".1f")),
        ("RSS KiB / idle stream", lambda r: fmt(r.rss_per_stream_kib, ".1f")),
        ("max sustained deliveries/s", at_max(lambda b: fmt(b.achieved, ",.0f"))),
        ("at logs/s", at_max(lambda b: fmt(b.rate_logs, ",.1f"))),
        ("logs / read", at_max(_logs_per_read)),
        ("server µs / delivery at max", at_max(lambda b: fmt(b.server_cpu_us_per_delivery, ".2f"))),
        ("server core at max", at_max(lambda b: fmt(b.server_core, ".0%"))),
        (
            "≈ deliveries/s at 100 % server core",
            at_max(lambda b: fmt(b.achieved / max(b.server_core, 1e-9), ",.0f")),
        ),
        ("client core at max", at_max(_client)),
        ("latency phase logs/s", lambda r: fmt(r.latency_rate_logs, ".1f")),
        (
            "server µs / delivery, latency phase",
            in_latency_phase(lambda s, _: fmt(s.server_cpu_us_per_delivery, ".2f")),
        ),
        ("p50 ms", in_latency_phase(lambda _, la: fmt(la.p50_ms, ".1f"))),
        ("p99 ms", in_latency_phase(lambda _, la: fmt(la.p99_ms, ".1f"))),
        ("Redis-only p50 / p99 ms", _floor),
        ("limited by", lambda r: r.error or r.limit),
    ]


def fanout_markdown(runs: Sequence[Run]) -> str:
    columns = _fanout_columns()
    rows = table([name for name, _ in columns], [[cell(r) for _, cell in columns] for r in runs])
    notes = [f"- {r.streams:,} streams: {'; '.join(r.notes)}" for r in runs if r.notes]
    if notes:
        rows += ["", "Notes:", *notes]
    return "\n".join(rows)


# -- bench.compare --------------------------------------------------------------------------


def _systems(runs: Sequence[Run]) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for r in runs:
        if r.workers == 1:
            seen.setdefault(r.system, r.label)
    return sorted(seen.items(), key=lambda kv: ORDER.index(kv[0]) if kv[0] in ORDER else 99)


def summary_table(runs: Sequence[Run], cases: Sequence[Case], key_case: str) -> str:
    rate_cases = [c for c in cases if not c.idle and c.workers == 1]
    idle_case = next((c for c in cases if c.idle), None)
    head = ["system"]
    head += [f"{c.title}: deliveries/s" for c in rate_cases]
    head += [
        f"µs CPU / delivery at max ({key_case})",
        f"µs CPU / delivery, one log at a time ({key_case})",
        f"p50 / p99 ms ({key_case})",
    ]
    if idle_case:
        head.append(f"KiB / idle stream ({idle_case.streams:,})")
    head.append(f"Redis subscriptions ({key_case})")
    rows = []
    for system, label in _systems(runs):
        cells = [label]
        for c in rate_cases:
            r = find_run(runs, system, c.name)
            cells.append(fmt(r.best, ",.0f") if r else MISSING)
        k = find_run(runs, system, key_case)
        best = k.max_sustained if k else None
        cells.append(fmt(best.server_cpu_us_per_delivery, ".2f") if best else MISSING)
        ls = k.latency_step if k else None
        cells.append(fmt(ls.server_cpu_us_per_delivery, ".2f") if ls else MISSING)
        lat = k.latency if k else None
        cells.append(f"{lat.p50_ms:.1f} / {lat.p99_ms:.1f}" if lat else MISSING)
        if idle_case:
            i = find_run(runs, system, idle_case.name)
            cells.append(fmt(i.rss_per_stream_kib, ".1f") if i else MISSING)
        subs = k.redis_subscriptions if k else None
        cells.append(str(subs) if subs is not None else ("none (HTTP publish)" if k else MISSING))
        rows.append(cells)
    return "\n".join(table(head, rows))


def detail_table(runs: Sequence[Run]) -> str:
    head = [
        "case",
        "system",
        "max sustained deliveries/s",
        "at logs/s",
        "logs / read",
        "server µs / delivery at max",
        "server core at max",
        "≈ deliveries/s at 100 % server core",
        "client core at max",
        "latency phase logs/s",
        "µs / delivery, latency phase",
        "p50 / p90 / p99 ms",
        "Redis-only p50 / p99 ms",
        "RSS KiB / stream",
        "limited by",
    ]
    rows = []
    for r in runs:
        b = r.max_sustained
        ls = r.latency_step
        lat = ls.latency if ls else None
        rows.append(
            [
                r.case,
                r.label,
                fmt(r.best, ",.0f"),
                fmt(b.rate_logs, ",.1f") if b else MISSING,
                _logs_per_read(b) if b else MISSING,
                fmt(b.server_cpu_us_per_delivery, ".2f") if b else MISSING,
                fmt(b.server_core, ".0%") if b else MISSING,
                # A linear estimate for one server core only: with several it means nothing.
                fmt(b.achieved / max(b.server_core, 1e-9), ",.0f")
                if b and r.workers <= 1
                else MISSING,
                _client(b) if b else MISSING,
                fmt(r.latency_rate_logs, ",.1f"),
                fmt(ls.server_cpu_us_per_delivery, ".2f") if ls else MISSING,
                f"{lat.p50_ms:.1f} / {lat.p90_ms:.1f} / {lat.p99_ms:.1f}" if lat else MISSING,
                _floor(r),
                fmt(r.rss_per_stream_kib, ".1f"),
                r.error or r.limit,
            ]
        )
    return "\n".join(table(head, rows))


def _cores(step: Step | None) -> str:
    if step is None or not step.cores:
        return MISSING
    return " / ".join(f"{step.cores.get(c, 0.0):.0%}" for c in sorted(step.cores))


def _server(step: Step | None) -> str:
    if step is None:
        return MISSING
    text = fmt(step.server_core, ".2f")
    if step.workers:
        text += " (" + " + ".join(f"{w:.2f}" for w in step.workers) + ")"
    return text


def two_core_bound(one: Run) -> tuple[float, float, float]:
    """From WORKERS=1's step at its max: server and client (load generator + redis) µs per
    delivery, and what two fully shared cores would give at those costs: 2 / (c_s + c_l)."""
    b = one.max_sustained
    if b is None or not b.achieved:
        return math.nan, math.nan, math.nan
    c_s = b.server_core / b.achieved * 1e6
    c_l = (b.loadgen_core + b.redis_core) / b.achieved * 1e6
    return c_s, c_l, 2e6 / (c_s + c_l)


def workers_table(runs: Sequence[Run]) -> str | None:
    pairs = []
    for two in (r for r in runs if r.workers > 1):
        one = find_run(runs, "roomlogs", two.case.removesuffix("-w2"))
        if one is not None:
            pairs.append((one, two))
    if not pairs:
        return None
    head = [
        "case",
        "roomlogs",
        "where",
        "max sustained deliveries/s",
        "peak achieved, any step (latency unbounded)",
        "cores 0 / 1 busy at max",
        "server cores at max (per worker)",
        "client cores at max (load generator + redis)",
        "streams per worker",
        "Redis subscriptions",
        "every stream every log",
        "limited by (first failed step)",
    ]
    rows = []
    lines = []
    for one, two in pairs:
        for r in (one, two):
            b = r.max_sustained
            peak = r.peak
            rows.append(
                [
                    r.case.removesuffix("-w2"),
                    f"WORKERS={r.workers}",
                    r.pinning,
                    fmt(r.best, ",.0f"),
                    fmt(peak.achieved, ",.0f") if peak else MISSING,
                    _cores(b),
                    _server(b),
                    fmt(b.loadgen_core + b.redis_core, ".2f") if b else MISSING,
                    " / ".join(f"{n:,}" for n in r.worker_streams) or f"{r.streams:,}",
                    str(r.redis_subscriptions) if r.redis_subscriptions is not None else MISSING,
                    "**no**" if r.lost else ("yes" if r.steps else MISSING),
                    r.error or r.limit,
                ]
            )
        ratio = two.best / one.best if one.best else math.nan
        p1, p2 = one.peak, two.peak
        peak_ratio = p2.achieved / p1.achieved if p1 and p2 and p1.achieved else math.nan
        c_s, c_l, bound = two_core_bound(one)
        line = f"- {one.case}: WORKERS={two.workers} / WORKERS=1 = **{fmt(ratio, '.2f')}x** max "
        line += "sustained"
        if not math.isnan(peak_ratio):
            line += f", {fmt(peak_ratio, '.2f')}x peak achieved"
        line += "."
        if not math.isnan(bound):
            line += (
                f" At WORKERS=1's max the server used {fmt(c_s, '.3f')} µs and the client side "
                f"{fmt(c_l, '.3f')} µs of CPU per delivery: two cores shared by both give at "
                f"most 2 / (c_s + c_l) ≈ {fmt(bound, ',.0f')}/s "
                f"({fmt(bound / one.best if one.best else math.nan, '.2f')}x), "
                "if the costs per delivery stay the same."
            )
        lines.append(line)
    return "\n".join([*table(head, rows), "", *lines])


def compare_markdown(
    runs: Sequence[Run],
    cases: Sequence[Case],
    *,
    key_case: str,
    rooms_case: str | None,
    stream_query: str,
    every_case: bool = True,
) -> str:
    """`key_case` names the summary's columns (1x1000, or 1x1000-filtered); `every_case`: the
    table of every case and system (the journal leaves it out for published numbers)."""
    parts = ["### Summary", "", summary_table(runs, cases, key_case), "", "### Targets", ""]
    if stream_query:
        parts.append(
            f"Not computed: roomlogs' streams were opened with `?{stream_query}` (the "
            "hub's per-stream path), the peers' without (they have no filters); issue 4's "
            "targets are defined on unfiltered streams."
        )
    else:
        parts.append(targets_table(targets(runs, key_case, rooms_case)))
    workers = workers_table(runs)
    if workers:
        parts += ["", "### WORKERS=2 against WORKERS=1", "", workers]
    if every_case:
        parts += ["", "### Every case", "", detail_table(runs)]
    notes = [f"- {r.case} {r.label}: {'; '.join(r.notes)}" for r in runs if r.notes and not r.error]
    notes += [f"- {r.case} {r.label}: setup failed: {r.error}" for r in runs if r.error]
    if notes:
        parts += ["", "Notes:", *notes]
    return "\n".join(parts)
