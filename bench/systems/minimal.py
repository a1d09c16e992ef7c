"""The minimal uvloop server (`minimal_server.py`): the reference limit, fed like roomlogs."""

from __future__ import annotations

import sys

from .._common import HOST
from .base import System


class Minimal(System):
    key = "minimal"
    label = "minimal uvloop server"

    def argv(self) -> list[str]:
        return [
            sys.executable, "-m", "bench.systems.minimal_server",
            "--host", HOST, "--port", str(self.port), "--redis-url", self.redis_url,
        ]  # fmt: skip
