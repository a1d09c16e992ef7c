"""A run's JSON (bench/results/, git-ignored): the command, its configuration, the machine and
every record; and the revision export of `--rev`."""

from __future__ import annotations

import argparse
import contextlib
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
from typing import Any

import aiohttp
import orjson

from ._common import ROOT, SetupError
from .records import Run

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
