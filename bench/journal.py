"""The run journal: docs/benchmarks.md, generated from the entries in bench/journal/*.json.

    .venv/bin/python -m bench.journal add bench/results/compare-<timestamp>.json --title "…"
    .venv/bin/python -m bench.journal            # regenerate docs/benchmarks.md
    .venv/bin/python -m bench.journal --check    # exit 1 when docs/benchmarks.md is stale

A result file (bench/results/, git-ignored) has every step of every case. `add` keeps what the
tables are made of: every record with its maximum, first failure and latency phase, and of the
other steps only the rate, whether it was sustained, and whether logs were lost. That is a
committed entry, `bench/journal/<started>-<benchmark>.json`, with a title and a note for what
the run was for. An entry can also be written by hand from numbers published elsewhere (the
older README runs are): any field left out reads as not measured.

The commands whose results are not `Run` records (bench.plain, bench.publish, bench.storm,
bench.scaleout, bench.multiroom: `KINDS`) keep their own records, and their tables are drawn
by their own report functions, from the entry as from the result.

The page has a history table (one line per `bench.compare` run: issue 4's ratios) and, per
entry, newest first, the tables the command printed.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from . import multiroom, report_publish, report_scaleout, report_storm
from ._common import MISSING, ROOT, fmt, shown
from .records import Case, Run, find_run
from .report import compare_markdown, fanout_markdown, table
from .report_plain import phases_of, plain_markdown
from .results import load_runs

JOURNAL_DIR: Final = ROOT / "bench" / "journal"
PAGE: Final = ROOT / "docs" / "benchmarks.md"
VERSION: Final = 1
# What an entry keeps of the maximum, the first failure and the latency phase: what the tables
# read, and the shares that explain the verdict.
KEY_STEP_KEEPS: Final = (
    "rate_logs", "offered", "achieved", "sustained", "complete", "dead_streams",
    "reads_per_delivery", "server_cpu_us_per_delivery", "server_core", "loadgen_core",
    "redis_core", "cores", "workers", "latency",
)  # fmt: skip
# Of the other steps an entry keeps the one with the peak rate and those that lost logs (what
# `Run.peak` and `Run.lost` read), with these fields.
STEP_KEEPS: Final = (
    "offered", "achieved", "sustained", "complete", "dead_streams", "expected",
    "delivered_after_drain",
)  # fmt: skip
CONFIG_KEEPS: Final = (
    "quick", "systems", "streams", "rooms", "idle", "workers_pin", "workers_cpus",
    "step_seconds", "max_steps", "stream_query", "key_streams", "rev", "rev_commit", "publish",
    "rate", "seconds", "gateways", "rounds", "conns", "depth", "cases",
)  # fmt: skip
# A multi-room phase keeps what the tables read (its cores, lag, counts are in the result file).
MULTIROOM_STEP_KEEPS: Final = (
    "achieved", "delivered", "server_cpu_us_per_delivery", "server_core", "reads_per_delivery",
    "latency", "other_server_core", "other_client_core",
)  # fmt: skip
ENVIRONMENT_KEEPS: Final = (
    "python", "kernel", "cpu", "cpus", "uvloop", "aiohttp", "redis_server", "git_commit",
    "work_tree_service_dirty",
)  # fmt: skip


def _rounded(value: Any) -> Any:
    """Floats to 10 significant digits (the tables print fewer), in nested data."""
    if isinstance(value, float):
        return float(f"{value:.10g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _phase(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if raw is None else {k: raw[k] for k in MULTIROOM_STEP_KEEPS if k in raw}


def _multiroom_trimmed(kept: dict[str, Any]) -> dict[str, Any]:
    """Each side of each case with its phases cut to what the tables read."""
    cases = [
        {
            **case,
            "sides": [
                {**side, "steps": [_phase(s) for s in side.get("steps", [])],
                 "profile_step": _phase(side.get("profile_step"))}
                for side in case.get("sides", [])
            ],
        }
        for case in kept.get("cases", [])
    ]  # fmt: skip
    return {**kept, "cases": cases}


def _whole(kept: dict[str, Any]) -> dict[str, Any]:
    return kept


def _scaleout(doc: dict[str, Any]) -> str:
    text = report_scaleout.markdown(report_scaleout.configs_of(doc), doc.get("pinning", "?"))
    skipped = doc.get("cluster_skipped")  # what the command prints under the tables
    return text + (f"\n\nRedis Cluster: not run ({skipped})." if skipped else "")


@dataclass(frozen=True)
class Kind:
    """A command whose result is not `Run` records: what an entry keeps of its result (whole
    keys, then trimmed), and its own report function, which draws the tables from the entry as
    from the result."""

    keeps: tuple[str, ...]
    tables: Callable[[dict[str, Any]], str]
    trim: Callable[[dict[str, Any]], dict[str, Any]] = _whole


KINDS: Final = {
    "plain": Kind(
        ("pinning", "phases", "problems"),
        lambda doc: plain_markdown(phases_of(doc), doc.get("pinning", "?")),
    ),
    # `goals` is left out: report_publish.goals derives it from the loads.
    "publish": Kind(
        ("loads", "latency", "publisher", "notes"),
        lambda doc: report_publish.markdown(report_publish.report_of(doc)),
    ),
    "storm": Kind(("systems",), lambda doc: report_storm.markdown(report_storm.runs_of(doc))),
    "scaleout": Kind(("pinning", "configs", "cluster_skipped"), _scaleout),
    "multiroom": Kind(("pinning", "cases"), multiroom.report_of, _multiroom_trimmed),
}


def entry_of(doc: dict[str, Any], *, title: str, note: str, source: str) -> dict[str, Any]:
    """The journal entry of a result document."""
    runs = []
    for raw, record in zip(doc.get("runs") or doc.get("tiers") or [], load_runs(doc), strict=True):
        run = {k: v for k, v in raw.items() if k not in ("steps", "counters", "server_counters")}
        for key in ("max_sustained", "first_failure", "latency_step"):
            if run.get(key):
                run[key] = {k: run[key][k] for k in KEY_STEP_KEEPS if k in run[key]}
        peak = record.peak
        kept = [
            s
            for s, step in zip(raw.get("steps", []), record.steps, strict=True)
            if (peak is not None and step is peak) or step.lost
        ]
        run["steps"] = [{k: s.get(k) for k in STEP_KEEPS} for s in kept]
        runs.append(run)
    config = doc.get("config", {})
    environment = doc.get("environment", {})
    entry: dict[str, Any] = _rounded(
        {
            "journal": VERSION,
            "benchmark": doc["benchmark"],
            "started": doc["started"],
            "title": title,
            "note": note,
            "source": source,
            "command": doc.get("command", ""),
            "config": {k: config[k] for k in CONFIG_KEEPS if k in config},
            "environment": {k: environment[k] for k in ENVIRONMENT_KEEPS if k in environment},
            **_extras(doc),
            "runs": runs,
        }
    )
    return entry


def _extras(doc: dict[str, Any]) -> dict[str, Any]:
    kind = KINDS.get(doc["benchmark"])
    if kind is None:
        return {}
    return kind.trim({k: doc[k] for k in kind.keeps if k in doc})


def add(result: Path, title: str, note: str, into: Path = JOURNAL_DIR) -> Path:
    doc = orjson.loads(result.read_bytes())
    entry = entry_of(doc, title=title, note=note, source=shown(result).as_posix())
    path = into / f"{entry['started']}-{entry['benchmark']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(dumps(entry))
    return path


def dumps(entry: dict[str, Any]) -> bytes:
    """Indented, but one line per record: small, and a diff shows which record changed."""
    head = {k: v for k, v in entry.items() if k != "runs"}
    text = orjson.dumps(head, option=orjson.OPT_INDENT_2)[:-2]  # without the closing brace
    runs = b",\n".join(b"    " + orjson.dumps(r) for r in entry["runs"])
    return text + b',\n  "runs": [\n' + runs + b"\n  ]\n}\n"


# -- the page ---------------------------------------------------------------------------------


@dataclass
class Entry:
    doc: dict[str, Any]
    runs: list[Run]

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.doc.get("config", {}))

    @property
    def when(self) -> str:
        if self.doc.get("when"):  # an entry written by hand whose time was not recorded
            return str(self.doc["when"])
        s = self.doc["started"]  # 20261202T114837Z
        return f"{s[0:4]}-{s[4:6]}-{s[6:8]} {s[9:11]}:{s[11:13]} UTC"

    @property
    def service(self) -> str:
        env = self.doc.get("environment", {})
        commit = self.config.get("rev_commit") or env.get("git_commit") or ""
        dirty = env.get("work_tree_service_dirty") and not self.config.get("rev_commit")
        return f"`{commit[:7]}`" + (" + uncommitted service/" if dirty else "") if commit else "?"

    @property
    def key_case(self) -> str:
        name = f"1x{self.config.get('key_streams', 1000)}"
        return f"{name}-filtered" if self.config.get("stream_query") else name

    @property
    def rooms_case(self) -> str | None:
        rooms = self.config.get("rooms")
        return f"{rooms[0]}x{rooms[1]}" if rooms else None

    @property
    def measured(self) -> bool:
        """Made from a result file (every table), not from published numbers (a few)."""
        return bool(self.doc.get("source", "").endswith(".json"))


def load_entries(directory: Path = JOURNAL_DIR) -> list[Entry]:
    entries = []
    for path in sorted(directory.glob("*.json")):
        doc = orjson.loads(path.read_bytes())
        entries.append(Entry(doc, load_runs(doc)))
    return sorted(entries, key=lambda e: e.doc["started"], reverse=True)


def cases_of(runs: Sequence[Run]) -> list[Case]:
    """The cases of a run's records, in their order (WORKERS=2 runs are not cases of their own)."""
    seen: dict[str, Case] = {}
    for r in runs:
        if r.workers == 1 and r.case not in seen:
            idle = r.case.startswith("idle")
            seen[r.case] = Case(r.case, r.rooms, r.per_room, idle=idle, query=r.stream_query)
    return list(seen.values())


def _ratio(runs: Sequence[Run], case: str | None, ref: str, value: str) -> float:
    if case is None:
        return math.nan
    mine, theirs = find_run(runs, "roomlogs", case), find_run(runs, ref, case)
    if mine is None or theirs is None:
        return math.nan

    def of(r: Run) -> float:
        if value == "p99":
            return r.latency.p99_ms if r.latency else math.nan
        return r.best

    a, b = of(mine), of(theirs)
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def history(entries: Sequence[Entry]) -> list[str]:
    """One line per `bench.compare` run: the key case (1 room x 1,000 in a full run) and the
    many-rooms case (1,000 x 2) against the peers."""
    head = [
        "run",
        "service",
        "cases",
        "roomlogs deliveries/s, key case",
        "÷ minimal",
        "÷ nchan",
        "p99 ÷ minimal",
        "many rooms ÷ minimal",
        "KiB / idle stream",
        "WORKERS=2 ÷ 1, key case",
        "what",
    ]
    rows = []
    for e in entries:
        if e.doc["benchmark"] != "compare":
            continue
        key, runs = e.key_case, e.runs
        mine = find_run(runs, "roomlogs", key)
        idle = next((r for r in runs if r.system == "roomlogs" and r.case.startswith("idle")), None)
        two = find_run(runs, "roomlogs-w2", f"{key}-w2")
        rows.append(
            [
                e.when,
                e.service,
                " · ".join(c for c in (key, e.rooms_case) if c) if runs else "",
                fmt(mine.best, ",.0f") if mine else MISSING,
                fmt(_ratio(runs, key, "minimal", "best"), ".2f"),
                fmt(_ratio(runs, key, "nchan", "best"), ".1f"),
                fmt(_ratio(runs, key, "minimal", "p99"), ".2f"),
                fmt(_ratio(runs, e.rooms_case, "minimal", "best"), ".3f"),
                fmt(idle.rss_per_stream_kib, ".1f") if idle else MISSING,
                fmt(two.best / mine.best, ".2f") if two and mine and mine.best else MISSING,
                e.doc.get("title", ""),
            ]
        )
    return table(head, rows)


def section(e: Entry) -> list[str]:
    doc = e.doc
    env = doc.get("environment", {})
    out = [f"## {e.when}: {doc.get('title') or doc['benchmark']}", ""]
    facts = [f"`bench.{doc['benchmark']}`, service at {e.service}"]
    if doc.get("command"):
        facts.append(f"`{doc['command']}`")
    machine = ", ".join(
        str(v)
        for v in (
            env.get("cpu") and f"{env.get('cpus', '?')} cores of {env['cpu']}",
            env.get("kernel") and f"Linux {env['kernel']}",
            env.get("python") and f"Python {env['python']}",
            env.get("uvloop") and f"uvloop {env['uvloop']}",
            env.get("aiohttp") and f"aiohttp {env['aiohttp']}",
            env.get("redis_server", "").split(" sha=")[0].replace("Redis server v=", "Redis "),
        )
        if v
    )
    if machine:
        facts.append(machine)
    facts.append(f"from {doc.get('source', '?')}")
    out += ["; ".join(facts) + ".", ""]
    if doc.get("note"):
        out += [doc["note"], ""]
    if kind := KINDS.get(doc["benchmark"]):
        return [*out, kind.tables(doc).replace("### ", "#### "), ""]
    if not e.runs:
        return out
    if doc["benchmark"] == "fanout":
        out += [fanout_markdown(e.runs), ""]
        return out
    text = compare_markdown(
        e.runs,
        cases_of(e.runs),
        key_case=e.key_case,
        rooms_case=e.rooms_case,
        stream_query=e.config.get("stream_query", ""),
        # Published numbers fill a few tables: not the every-case one, which would be n/a.
        every_case=e.measured,
    )
    out += [text.replace("### ", "#### "), ""]
    return out


def render(entries: Sequence[Entry]) -> str:
    lines = [
        "# Benchmark journal",
        "",
        "<!-- Generated by `python -m bench.journal` from bench/journal/*.json: edit those "
        "(or add a run with `python -m bench.journal add`), not this page. -->",
        "",
        "Every recorded run, newest first. What the numbers mean and how they are measured: "
        "[bench/README.md](../bench/README.md). They are relative: compare runs made on the "
        "same machine at about the same time.",
        "",
        "## History (`bench.compare`, issue 4's ratios)",
        "",
        *history(entries),
        "",
    ]
    for e in entries:
        lines += section(e)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.journal", description=__doc__)
    p.add_argument("--check", action="store_true", help="exit 1 when the page is stale")
    p.add_argument("--out", type=Path, default=PAGE)
    sub = p.add_subparsers(dest="command")
    a = sub.add_parser("add", help="add a result file to the journal")
    a.add_argument("result", type=Path)
    a.add_argument("--title", required=True, help="what the run was for, in a few words")
    a.add_argument("--note", default="", help="a paragraph under the title")
    args = p.parse_args(argv)
    if args.command == "add":
        print(f"entry: {shown(add(args.result, args.title, args.note))}")
    page = render(load_entries())
    if args.check:
        if not args.out.exists() or args.out.read_text() != page:
            print(f"{shown(args.out)} is stale: run python -m bench.journal", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(page)
    print(f"page: {shown(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
