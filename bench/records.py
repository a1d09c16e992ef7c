"""What a run measured, as data: latency percentiles, one rate step, one system on one case.

Both commands write these records to their JSON (`dataclasses.asdict`), and the report and the
journal read them back; nothing here measures anything.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

from ._common import NOISY


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    index = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[index]


@dataclass
class Latency:
    samples: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, values: array[float] | Sequence[float]) -> Latency:
        ordered = sorted(values)
        return cls(
            samples=len(ordered),
            p50_ms=percentile(ordered, 0.50) * 1000,
            p90_ms=percentile(ordered, 0.90) * 1000,
            p99_ms=percentile(ordered, 0.99) * 1000,
            max_ms=(ordered[-1] * 1000) if ordered else math.nan,
        )


@dataclass(frozen=True)
class Case:
    """What is measured: `rooms` x `per_room` streams, under load or idle (memory only)."""

    name: str  # 1x1000, 1000x2, idle; -w2 and -filtered variants
    rooms: int
    per_room: int
    idle: bool = False
    workers: int = 1
    query: str = ""  # roomlogs' stream query string (--stream-query); the peers ignore it

    @property
    def streams(self) -> int:
        return self.rooms * self.per_room

    @property
    def title(self) -> str:
        if self.idle:
            return f"{self.streams:,} idle streams"
        if self.rooms == 1:
            what = f"1 room x {self.per_room:,}"
        else:
            what = f"{self.rooms:,} rooms x {self.per_room:,}"
        what += f", WORKERS={self.workers}" if self.workers > 1 else ""
        return what + (f", roomlogs streams ?{self.query}" if self.query else "")


@dataclass
class Step:
    """One rate step: publish at a fixed rate for a few seconds, then wait for every log."""

    rate_logs: float  # offered logs/s
    offered: float  # offered deliveries/s (logs/s x streams per room)
    sent: int
    expected: int  # deliveries expected (every stream, its room's logs)
    delivered: int
    achieved: float  # deliveries / (last delivery - first send)
    lag_s: float  # last delivery - last send
    lag_limit_s: float
    complete: bool
    sustained: bool
    server_cpu_us_per_delivery: float
    publish_rate: float  # logs/s actually sent: (sent - 1) / (last send - first send)
    server_core: float  # the server's process tree, share of one core
    loadgen_core: float  # this process (stream readers + publisher)
    redis_core: float
    cores: dict[int, float]  # every core's busy share, whoever used it
    other_server_core: float  # server core(s) busy beyond the server: other load (noise)
    other_client_core: float  # client core busy beyond load generator and redis
    reads_per_delivery: float
    latency: Latency | None
    dead_streams: int
    retried: bool = False
    # Deliveries once the backlog of a step that was not complete in time had drained.
    delivered_after_drain: int | None = None
    workers: list[float] = field(default_factory=list)  # each worker's CPU, when several

    @property
    def noisy(self) -> bool:
        """Other processes loaded a core enough to matter."""
        return max(self.other_server_core, self.other_client_core) >= NOISY

    @property
    def lost(self) -> bool:
        """A stream was closed, or logs were still missing once the backlog had drained."""
        if self.dead_streams:
            return True
        return not self.complete and (self.delivered_after_drain or 0) < self.expected

    def line(self) -> str:
        """The progress line of this step."""
        lat = f" p99 {self.latency.p99_ms:7.1f} ms" if self.latency else ""
        verdict = "ok  " if self.sustained else "FAIL"
        other = f" other load {self.other_server_core:.0%}/{self.other_client_core:.0%}"
        text = (
            f"  {verdict} offered {self.offered:9,.0f}/s ({self.rate_logs:8.1f} logs/s) "
            f"achieved {self.achieved:9,.0f}/s lag {self.lag_s:6.3f}s "
            f"server {self.server_core:4.0%} client {self.loadgen_core:4.0%}+"
            f"{self.redis_core:3.0%} {self.server_cpu_us_per_delivery:6.2f} µs/dlv{lat}"
            + (other if self.noisy else "")
        )
        if self.workers:
            each = "/".join(f"{w:.0%}" for w in self.workers)
            busy = " ".join(f"{c}:{b:.0%}" for c, b in sorted(self.cores.items()))
            text += f" [workers {each}; cores {busy}]"
        return text


@dataclass
class Run:
    """One system on one case: its steps, its maximum, its latency phase, its memory."""

    system: str  # the key: roomlogs, roomlogs-w2, minimal, nchan, tutorial
    label: str
    case: str  # 1x1000, 1000x2, idle, 1x1000-w2, 1x1000-filtered…
    rooms: int
    per_room: int
    streams: int
    workers: int = 1
    pinning: str = ""
    stream_query: str = ""  # the GET's query string ("": unfiltered, and every peer)
    worker_streams: list[int] = field(default_factory=list)
    connect_s: float = math.nan
    rss_before_kib: int = 0
    rss_after_kib: int = 0
    rss_per_stream_kib: float = math.nan
    idle_server_core: float = math.nan
    redis_subscriptions: int | None = None
    steps: list[Step] = field(default_factory=list)
    max_sustained: Step | None = None
    first_failure: Step | None = None
    limit: str = "not measured"
    latency_rate_logs: float = math.nan
    latency_step: Step | None = None
    redis_floor: Latency | None = None  # the same logs, read by a plain Redis subscriber
    counters: dict[str, float] = field(default_factory=dict)  # the server's /metrics
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def best(self) -> float:
        return self.max_sustained.achieved if self.max_sustained else math.nan

    @property
    def peak(self) -> Step | None:
        """The step with the highest achieved rate, sustained or not: what it delivered at
        saturation when latency is not bounded (late, never lost: every stream still gets
        every log once the backlog drains)."""
        done = [s for s in self.steps if not s.dead_streams]
        return max(done, key=lambda s: s.achieved) if done else None

    @property
    def latency(self) -> Latency | None:
        """The latency phase's percentiles."""
        return self.latency_step.latency if self.latency_step else None

    @property
    def lost(self) -> bool:
        """Whether any stream missed a log for good in any step (late logs are not lost)."""
        return any(s.lost for s in self.steps)


def find_run(runs: Sequence[Run], system: str, case: str) -> Run | None:
    for r in runs:
        if r.system == system and r.case == case:
            return r
    return None
