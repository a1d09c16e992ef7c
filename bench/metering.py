"""What the machine did during a phase: CPU of the server, the load generator and Redis, each
worker's CPU, and every core's busy share; and the wait for quiet cores before a phase."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ._common import NOISY, Say
from ._procs import busy_shares, core_times, proc_cpu_seconds


@dataclass
class Usage:
    """CPU used between `UsageMeter.start()` and `stop()`, as shares of one core."""

    wall: float
    server: float  # the system's whole process tree
    loadgen: float  # this process: readers and publisher
    redis: float
    cores: dict[int, float]  # every core's busy share, whoever used it
    server_seconds: float  # the server's CPU seconds in that time
    workers: list[float] = field(default_factory=list)  # each worker's, when there are several

    @property
    def client_side(self) -> float:
        return self.loadgen + self.redis


class UsageMeter:
    """Reads the CPU of the server (`server_cpu_seconds`, e.g. over its process tree), of
    redis-server, of this process and of each of `worker_pids`, and /proc/stat's cores."""

    def __init__(
        self,
        server_cpu_seconds: Callable[[], float],
        redis_pid: int,
        worker_pids: Sequence[int] = (),
    ) -> None:
        self.server_cpu_seconds = server_cpu_seconds
        self.redis_pid = redis_pid
        self.worker_pids = list(worker_pids)
        self._t = self._server = self._loadgen = self._redis = 0.0
        self._workers: list[float] = []
        self._cores: dict[int, tuple[int, int]] = {}

    def _worker_cpu(self) -> list[float]:
        out = []
        for pid in self.worker_pids:
            try:
                out.append(proc_cpu_seconds(pid))
            except (OSError, ValueError):
                out.append(math.nan)
        return out

    def start(self) -> None:
        self._t = time.monotonic()
        self._server = self.server_cpu_seconds()
        self._redis = proc_cpu_seconds(self.redis_pid)
        self._loadgen = time.process_time()
        self._workers = self._worker_cpu()
        self._cores = core_times()

    def stop(self) -> Usage:
        wall = max(time.monotonic() - self._t, 1e-9)
        server = self.server_cpu_seconds() - self._server
        workers = [(b - a) / wall for a, b in zip(self._workers, self._worker_cpu(), strict=True)]
        return Usage(
            wall=wall,
            server=server / wall,
            loadgen=(time.process_time() - self._loadgen) / wall,
            redis=(proc_cpu_seconds(self.redis_pid) - self._redis) / wall,
            cores=busy_shares(self._cores, core_times()),
            server_seconds=server,
            workers=workers,
        )


class QuietCores:
    """Waits until `cores` are idle (below half of NOISY busy), at most `wait_s` at a time and
    `budget_s` over the whole run."""

    def __init__(self, cores: Sequence[int], wait_s: float, budget_s: float) -> None:
        self.cores = list(cores)
        self.wait_s = wait_s
        self.left_s = budget_s

    async def wait(self, say: Say) -> float:
        """Returns the last busy share seen (the most busy of the cores)."""
        start = time.monotonic()
        deadline = start + max(0.0, min(self.wait_s, self.left_s))
        busy = 0.0
        next_note = start
        while True:
            before = core_times()
            await asyncio.sleep(1.0)
            shares = busy_shares(before, core_times())
            busy = max((shares.get(c, 0.0) for c in self.cores), default=0.0)
            now = time.monotonic()
            if busy < NOISY / 2 or now >= deadline:
                break
            if now >= next_note:
                say(f"  waiting for a quiet machine: a core is {busy:.0%} busy")
                next_note = now + 5
        self.left_s -= time.monotonic() - start
        return busy
