"""A system under test: a process tree on a free port, pinned with taskset, read from /proc.

Each system says how it is started (`argv`, `env`, `cwd`), when it is ready, what its SSE bytes
look like (`framing`) and how it gets its logs (`feed`). The rest is common: the GET every
system is asked (with the roomlogs token, which the others ignore), start and stop (SIGTERM,
then SIGKILL), and CPU and RSS over the whole process tree (nginx's master and worker, roomlogs'
supervisor and workers).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from .._common import HOST, ROOT, SetupError
from .._procs import (
    free_port,
    pinned,
    proc_start_ticks,
    stop_leftovers,
    stop_process,
    tree_cpu_seconds,
    tree_pids,
    tree_rss_kib,
)
from ..publishers import Feed, ScriptFeed
from ..reader import LF_CONNECTED, Framing


async def http_status(port: int, path: str, limit_s: float = 2.0) -> int | None:
    """The status code of `GET path` on 127.0.0.1:port, or None when nothing answers."""
    try:
        async with asyncio.timeout(limit_s):
            reader, writer = await asyncio.open_connection(HOST, port)
            try:
                writer.write(
                    f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
                )
                line = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError):
        return None
    parts = line.split()
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None


class System:
    """One system under test."""

    key = ""
    label = ""
    framing: Framing = LF_CONNECTED
    ready_path = "/"
    workers = 1
    # The query string of the stream GET (`agentType=bench`): only roomlogs takes one, the
    # peers have no filters and are always asked without.
    query = ""

    def __init__(self, redis_url: str, workdir: Path, cpus: str | None, streams: int) -> None:
        self.redis_url = redis_url
        self.workdir = workdir
        self.cpus = cpus  # taskset's list ("0", "0,1"); None: not pinned
        self.streams = streams
        self.port = free_port()
        self.log_path = workdir / f"{self.key}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._pids: list[int] = []
        self._started: dict[int, int | None] = {}  # pid → its start time, to stop leftovers

    # -- what each system defines ---------------------------------------------------------

    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {}

    def cwd(self) -> Path:
        return ROOT

    def feed(self, rooms: Sequence[str]) -> Feed:
        """How its logs are published: the service's script on Redis, unless said otherwise."""
        return ScriptFeed(self.redis_url, rooms)

    @property
    def uses_redis(self) -> bool:
        return True

    async def ready(self) -> bool:
        return await http_status(self.port, self.ready_path) is not None

    async def counters(self) -> dict[str, float]:
        """Its own counters, to cross-check what the load generator saw."""
        return {}

    def worker_pids(self) -> list[int]:
        """The worker processes to meter one by one, when there are several."""
        return []

    def worker_streams(self) -> list[int]:
        """The client connections each worker holds, when there are several."""
        return []

    # -- common -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def request(self, room: str, token: str) -> bytes:
        """The same GET for every system, with `?query` when the system has one."""
        path = f"/api/v1/rooms/{room}/logs" + (f"?{self.query}" if self.query else "")
        return (
            f"GET {path} HTTP/1.1\r\n"
            f"Host: {HOST}:{self.port}\r\n"
            f"Authorization: Bearer {token}\r\n"
            "Accept: text/event-stream\r\n"
            "Cache-Control: no-cache\r\n"
            "\r\n"
        ).encode("ascii")

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "CORS_"))}
        env.update(self.env())
        argv = pinned(self.cpus, self.argv())
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                argv, cwd=self.cwd(), env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def output_tail(self, chars: int = 1500) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    async def wait_ready(self, limit_s: float = 30) -> None:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise SetupError(f"{self.key} exited: {self.output_tail()}")
            if await self.ready():
                await asyncio.sleep(0.3)
                self._pids = tree_pids(self.proc.pid)
                self._started = {pid: proc_start_ticks(pid) for pid in self._pids}
                return
            await asyncio.sleep(0.05)
        raise SetupError(f"{self.key} not ready within {limit_s:g} s: {self.output_tail()}")

    @property
    def pids(self) -> list[int]:
        """Its process tree, as found once it was ready."""
        return self._pids

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self._pids)

    def rss_kib(self) -> int:
        return tree_rss_kib(self._pids)

    def stop(self) -> list[int]:
        """Stop the tree's root, then whatever of the tree outlived it (a worker its supervisor
        did not stop would hold its Redis subscription and CPU into the next case). Returns
        the pids of those leftovers."""
        if self.proc is not None:
            stop_process(self.proc, 15)
            self._started.pop(self.proc.pid, None)
        self.proc = None
        left = stop_leftovers(self._started)
        self._started = {}
        return left
