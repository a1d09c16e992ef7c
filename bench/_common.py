"""What every bench module shares: paths, the loopback host, the token secret, the thresholds
of the verdicts, and the progress line."""

from __future__ import annotations

import math
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
RESULTS_DIR: Final = ROOT / "bench" / "results"  # git-ignored: every step of every run
HOST: Final = "127.0.0.1"  # all traffic stays on loopback
SECRET: Final = "bench-" + secrets.token_urlsafe(24)  # the JWT_SECRET of roomlogs under test

MIN_TICK: Final = 0.002  # seconds between publisher wake-ups at the highest rates
POLL: Final = 0.02  # seconds between checks while waiting for deliveries
SATURATED: Final = 0.90  # a core this busy is treated as saturated
OWN_SHARE: Final = 0.75  # ...by our own processes when they used at least this much of it
NOISY: Final = 0.15  # other processes using this much of a core make a step noisy
MISSING: Final = "n/a"  # a table cell that was not measured

# Where progress lines go (stderr: stdout carries the Markdown tables).
Say = Callable[[str], None]


class SetupError(RuntimeError):
    """The benchmark could not be set up (a process did not start, streams did not open)."""


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def fmt(value: float | None, spec: str) -> str:
    """`value` formatted, or n/a when it was not measured (None, NaN)."""
    return MISSING if value is None or math.isnan(value) else format(value, spec)


def shown(path: Path) -> Path:
    """`path` relative to the repository when it is inside it, for output lines."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
