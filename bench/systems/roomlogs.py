"""roomlogs as it runs in production: `python -m service serve` on Redis, WORKERS=N.

Its settings for the bench: a long heartbeat (no heartbeat frames in the counts), a large
`SUBSCRIBER_BUFFER` (an overloaded step queues rather than closing slow consumers), room checks
off, and `MAX_CONNECTIONS` above the streams of the case. Its logs come from the publish script
on Redis, or (`publish="http"`) from its own `POST` endpoint. `source` is the directory holding the
`service` package to run: the work tree, or a revision exported with `--rev`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from .._common import HOST, ROOT, SECRET, SetupError
from .._procs import established_inodes, is_spawned_worker, socket_count, tree_pids
from ..publishers import Feed, HttpFeed
from .base import System, http_status

COUNTERS: Final = (
    "roomlogs_events_sent_total",
    "roomlogs_broker_messages_total",
    "roomlogs_slow_consumer_closes_total",
    "roomlogs_connections",
)


class Roomlogs(System):
    key = "roomlogs"
    label = "roomlogs"
    ready_path = "/readyz"

    def __init__(
        self,
        redis_url: str,
        workdir: Path,
        cpus: str | None,
        streams: int,
        *,
        workers: int = 1,
        source: Path = ROOT,
        query: str = "",
        publish: str = "redis",
    ) -> None:
        if workers > 1:
            self.key = f"roomlogs-w{workers}"
            self.label = f"roomlogs WORKERS={workers}"
        if query:
            # Filtered streams take the hub's per-stream path, not the shared room write.
            self.label = f"{self.label}, ?{query}"
            self.query = query
        super().__init__(redis_url, workdir, cpus, streams)
        self.workers = workers
        self.source = source
        self.publish = publish  # redis: the publish script; http: its POST endpoint
        # Per worker, the cores it is pinned to once it is up (None: the taskset of all).
        self.worker_cpus: list[set[int]] | None = None

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "service", "serve"]

    def cwd(self) -> Path:
        return self.source

    def env(self) -> dict[str, str]:
        return {
            "REDIS_URL": self.redis_url,
            "JWT_SECRET": SECRET,
            "JWT_ALGORITHMS": "HS256",
            "LISTEN_HOST": HOST,
            "PORT": str(self.port),
            "HEARTBEAT_INTERVAL": "3600",
            "MAX_CONNECTIONS": str(self.streams * 2 + 1000),
            "SUBSCRIBER_BUFFER": "100000",
            "ROOM_CHECK": "off",
            "WORKERS": str(self.workers),
            "SHUTDOWN_TIMEOUT": "2",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "text",
        }

    def feed(self, rooms: Sequence[str]) -> Feed:
        if self.publish == "http":
            return HttpFeed(self.url, rooms)
        return super().feed(rooms)

    def worker_pids(self) -> list[int]:
        """The worker processes (the supervisor's spawned children) when WORKERS > 1."""
        if self.proc is None or self.workers == 1:
            return []
        return sorted(p for p in self.pids if p != self.proc.pid and is_spawned_worker(p))

    def worker_streams(self) -> list[int]:
        """Established client connections each worker holds (SO_REUSEPORT's split)."""
        inodes = established_inodes(self.port)
        return [socket_count(pid, inodes) for pid in self.worker_pids()]

    async def wait_ready(self, limit_s: float = 30) -> None:
        await super().wait_ready(limit_s)
        if self.worker_cpus is not None:
            pids = self.worker_pids()
            if len(pids) != len(self.worker_cpus):
                raise SetupError(f"{len(pids)} workers found, {self.workers} expected")
            for pid, cpus in zip(pids, self.worker_cpus, strict=True):
                os.sched_setaffinity(pid, cpus)

    async def ready(self) -> bool:
        if self.workers == 1:
            return await http_status(self.port, "/readyz") == 200
        # SO_REUSEPORT spreads connections: every worker must be up and live.
        assert self.proc is not None
        if len(tree_pids(self.proc.pid)) < self.workers + 1:
            return False
        for _ in range(4 * self.workers):
            if await http_status(self.port, "/readyz") != 200:
                return False
        return True

    async def counters(self) -> dict[str, float]:
        """A few /metrics counters (of the worker that answers), to cross-check what the load
        generator saw: `roomlogs_events_sent_total` should match the deliveries."""
        out: dict[str, float] = {}
        with contextlib.suppress(OSError, TimeoutError, ValueError):
            async with asyncio.timeout(5):
                reader, writer = await asyncio.open_connection(HOST, self.port)
                writer.write(
                    f"GET /metrics HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
                )
                body = await reader.read()
                writer.close()
            for line in body.decode("utf-8", "replace").splitlines():
                name, _, value = line.partition(" ")
                if name in COUNTERS:
                    out[name] = out.get(name, 0.0) + float(value)
        return out
