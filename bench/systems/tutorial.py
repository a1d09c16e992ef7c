"""The tutorial pattern (`tutorial_server.py`): sse-starlette under uvicorn, one Redis
subscription per stream."""

from __future__ import annotations

import sys

from .._common import HOST
from ..reader import Framing
from .base import System


class Tutorial(System):
    key = "tutorial"
    label = "sse-starlette, 1 Redis sub/stream"
    # sse-starlette ends its lines with CRLF.
    framing = Framing.lines(b"\r\n", b"event: connected\r\n")

    def argv(self) -> list[str]:
        return [
            sys.executable, "-m", "uvicorn", "bench.systems.tutorial_server:app",
            "--host", HOST, "--port", str(self.port),
            "--log-level", "warning", "--no-access-log",
            "--backlog", "4096", "--timeout-graceful-shutdown", "2",
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        return {"REDIS_URL": self.redis_url}
