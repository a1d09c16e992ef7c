"""The systems `bench.compare` measures side by side, each as real processes on loopback.

- `roomlogs`: `python -m service serve`, the production entry point, on Redis.
- `minimal`: `python -m bench.systems.minimal_server`, the reference limit (no framework, one
  PSUBSCRIBE).
- `tutorial`: `uvicorn bench.systems.tutorial_server:app`, sse-starlette with one Redis
  subscription per stream.
- `nchan`: Debian's nginx with `libnginx-mod-nchan`, one worker, its memory store.
"""

from __future__ import annotations

from typing import Final

from .base import System
from .minimal import Minimal
from .nchan import Nchan, ensure_nchan, without_missing_nchan
from .roomlogs import Roomlogs
from .tutorial import Tutorial

SYSTEMS: Final[dict[str, type[System]]] = {
    cls.key: cls for cls in (Roomlogs, Minimal, Tutorial, Nchan)
}

__all__ = [
    "SYSTEMS",
    "Minimal",
    "Nchan",
    "Roomlogs",
    "System",
    "Tutorial",
    "ensure_nchan",
    "without_missing_nchan",
]
