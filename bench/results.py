"""A run's JSON (bench/results/, git-ignored): the command, its configuration, the machine and
every record; and the revision export of `--rev`."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.metadata
import math
import os
import platform
import resource
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import orjson

from ._common import ROOT, SetupError, say
from .records import Latency, Run, Step

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

R = TypeVar("R", bound="DataclassInstance")

SKIPPED = ("started", "workdir")  # the timestamp (a key of its own) and a run-local path


def utc_stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def git(*argv: str) -> str:
    with contextlib.suppress(OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return subprocess.run(
            ["git", *argv], cwd=ROOT, check=True, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    return ""


def environment() -> dict[str, Any]:
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    try:
        uvloop_version: str | None = importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        uvloop_version = None
    return {
        "python": platform.python_version(),
        "kernel": platform.release(),
        "cpu": cpu_model,
        "cpus": os.cpu_count(),
        "uvloop": uvloop_version,
        "aiohttp": aiohttp.__version__,
        "redis_server": subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=False
        ).stdout.strip(),
        "git_commit": git("rev-parse", "HEAD"),
        # Only matters when the service ran from the work tree (no --rev).
        "work_tree_service_dirty": bool(git("status", "--porcelain", "--", "service")),
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
    }


def json_safe(value: Any) -> Any:
    """NaN and infinity are not JSON: they are written as null."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _nan(value: Any) -> float:
    return math.nan if value is None else float(value)


def _latency(raw: dict[str, Any] | None) -> Latency | None:
    if raw is None:
        return None
    return Latency(
        samples=raw.get("samples", 0),
        **{k: _nan(raw.get(k)) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")},
    )


_STEP_FLOATS = {
    "rate_logs", "offered", "achieved", "lag_s", "lag_limit_s", "server_cpu_us_per_delivery",
    "publish_rate", "server_core", "loadgen_core", "redis_core", "other_server_core",
    "other_client_core", "reads_per_delivery",
}  # fmt: skip
_STEP_COUNTS = {"sent": 0, "expected": 0, "delivered": 0, "dead_streams": 0}
_RUN_FLOATS = {"connect_s", "rss_per_stream_kib", "idle_server_core", "latency_rate_logs"}


def step_of(raw: dict[str, Any] | None) -> Step | None:
    """A step of a result, or of a journal entry, whose steps keep only what the tables read
    (a field that is not there was not kept: a count of 0, a share not measured)."""
    if raw is None:
        return None
    fields = {k: v for k, v in raw.items() if k in Step.__dataclass_fields__}
    fields = {"complete": False, "sustained": False, **_STEP_COUNTS, **fields}
    for k in _STEP_FLOATS:
        # null was NaN or infinity (a lag that never ended): both read as "not measured".
        fields[k] = _nan(fields.get(k))
    fields["cores"] = {int(c): b for c, b in (raw.get("cores") or {}).items()}
    fields["latency"] = _latency(raw.get("latency"))
    return Step(**fields)


def record_of(cls: type[R], raw: dict[str, Any]) -> R:
    """A flat record of a result back from its JSON: null as NaN in a float field (json_safe
    wrote NaN as null), a field the file does not have at its default (an older result, or an
    entry that did not keep it). Nested records are the caller's to read back."""
    known = {f.name: f.type for f in dataclasses.fields(cls)}
    values = {k: v for k, v in raw.items() if k in known}
    for k, v in values.items():
        if v is None and known[k] in ("float", float):  # a string under postponed annotations
            values[k] = math.nan
    return cls(**values)


def load_runs(doc: dict[str, Any]) -> list[Run]:
    """The records of a result JSON, back as `Run`s (also the older fanout files, whose runs
    were `tiers` without a case or a system)."""
    out: list[Run] = []
    for raw in doc.get("runs") or doc.get("tiers") or []:
        fields = {k: v for k, v in raw.items() if k in Run.__dataclass_fields__}
        if "case" not in raw:  # a tier of bench.fanout before the records were merged
            n = raw["streams"]
            fields.update(system="roomlogs", label="roomlogs", case=f"1x{n}", rooms=1, per_room=n)
            fields["counters"] = raw.get("server_counters", {})
        for k in _RUN_FLOATS:
            fields[k] = _nan(fields.get(k))
        fields["steps"] = [step_of(s) for s in raw.get("steps", [])]
        for k in ("max_sustained", "first_failure", "latency_step"):
            fields[k] = step_of(raw.get(k))
        fields["redis_floor"] = _latency(raw.get("redis_floor"))
        out.append(Run(**fields))
    return out


def write_result(
    path: Path,
    benchmark: str,
    args: argparse.Namespace,
    runs: Sequence[Run],
    **extra: Any,
) -> None:
    """The whole run as JSON: every step of every record, even the failed and repeated ones."""
    config = {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k not in SKIPPED
    }
    doc = {
        "benchmark": benchmark,
        "started": args.started,
        "command": " ".join([Path(sys.executable).name, "-m", f"bench.{benchmark}", *sys.argv[1:]]),
        "config": config,
        "environment": environment(),
        **extra,
        "runs": [asdict(r) for r in runs],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(json_safe(doc), option=orjson.OPT_INDENT_2) + b"\n")


def export_revision(rev: str, into: Path) -> str:
    """`git archive` the `service` package of `rev` into `into`; returns the commit id."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--verify", f"{rev}^{{commit}}"],
            cwd=ROOT, check=True, capture_output=True, text=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        archive = subprocess.run(
            ["git", "archive", "--format=tar", commit, "service"],
            cwd=ROOT, check=True, capture_output=True, timeout=60,
        ).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SetupError(f"cannot export {rev!r}: {exc}") from None
    return commit


def choose_source(args: Any, tmp: Path, what: str) -> None:
    """Set `args.source` (the tree the service runs from) to the work tree, or, with `--rev`,
    to that revision's `service` exported under `tmp`, noting `args.rev_commit`."""
    args.source = ROOT
    if args.rev:
        args.source = tmp / "src"
        args.source.mkdir()
        args.rev_commit = export_revision(args.rev, args.source)
        say(f"{what} from {args.rev} ({args.rev_commit[:12]}), not the work tree")
