"""roomlogs against its peers, in one run, on one machine: the minimal uvloop fan-out server
(the reference limit), the tutorial pattern (sse-starlette, one Redis subscription per stream)
and nchan (nginx, one worker).

    .venv/bin/python -m bench.compare            # everything, ~20 minutes
    .venv/bin/python -m bench.compare --quick    # 1 room x 1,000, 1,000 rooms x 2, 2,000 idle

Every system runs as real processes pinned to core 0, fresh for each case; the load
generator (this process, uvloop, one small protocol object per stream) and the private
redis-server share core 1. For each case and system, in turn (the systems are interleaved
within a case, so noise from other processes spreads over all of them):

- 1 room x N streams (N = 100, 1,000, 5,000) and R rooms x S streams (1,000 x 2): the max
  sustained deliveries/s with no loss (rate stepping, as `bench.fanout`), the server CPU per
  delivery, then publish->receive latency on every stream at a fixed load (20,000
  deliveries/s: 1,000 streams x 20 logs/s);
- idle: RSS per stream with 10,000 open idle streams;
- roomlogs with WORKERS=2 against WORKERS=1 on the same case, right after it: 1 room x N for
  N >= 1,000 (--workers-streams), the many-rooms case with --workers-rooms. The workers get
  both cores, so they share core 1 with the load generator and Redis (--workers-pin); the
  table shows each core's busy share, each worker's CPU and streams, and what was full.

--stream-query agentType=bench opens roomlogs' streams (WORKERS=1 and 2) with that query
string, so they take the hub's per-stream path (filter, queue, join per stream) instead of
the shared room write; the peers have no filters and get the plain GET. Such cases are named
`<case>-filtered` and issue 4's targets (defined on unfiltered streams) are not computed.

It prints Markdown tables (with the ratios of issue 4's targets), writes every step to
bench/results/compare-<UTC timestamp>.json and draws docs/bench-fanout.png. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import math
import os
import resource
import secrets
import sys
import tempfile
import time
import urllib.parse
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import orjson
import redis.asyncio as aioredis

from service.auth import mint_token
from service.broker.keys import PLAIN
from service.logs import LEVELS

from .fanout import (
    NOISY,
    OWN_SHARE,
    SATURATED,
    SECRET,
    Latency,
    LogFactory,
    PrivateRedis,
    Recorder,
    RedisTap,
    SetupError,
    StepResult,
    Usage,
    _clean,
    core_times,
    environment,
    export_revision,
    proc_cpu_seconds,
    wait_quiet,
)
from .loadgen import Pool, Publisher, publish_at
from .systems import SYSTEMS, Roomlogs, System, ensure_nchan

ROOT: Final = Path(__file__).resolve().parent.parent
RESULTS_DIR: Final = ROOT / "bench" / "results"
DEFAULT_CHART: Final = ROOT / "docs" / "bench-fanout.png"
ORDER: Final = ("roomlogs", "minimal", "nchan", "tutorial")
# First offered deliveries/s when nothing smaller was measured for the system yet.
FIRST_RATE: Final = {
    "roomlogs": 40_000.0,
    "minimal": 80_000.0,
    "nchan": 40_000.0,
    "tutorial": 8_000.0,
}
NA: Final = "n/a"


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class Step(StepResult):
    """A rate step, plus each worker's CPU (share of one core) when the system has several."""

    workers: list[float] = field(default_factory=list)

    def line(self) -> str:
        text = super().line()
        if self.workers:
            each = "/".join(f"{w:.0%}" for w in self.workers)
            busy = " ".join(f"{c}:{b:.0%}" for c, b in sorted(self.cores.items()))
            text += f" [workers {each}; cores {busy}]"
        return text


# -- what is measured ------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
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
class Run:
    system: str
    label: str
    case: str
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
    redis_floor: Latency | None = None
    counters: dict[str, float] = field(default_factory=dict)
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


class Meter:
    """CPU of the system's process tree, redis-server and this process, and every core's
    busy share, between start() and stop()."""

    def __init__(self, system: System, redis_pid: int) -> None:
        self.system = system
        self.redis_pid = redis_pid
        self._t = self._server = self._loadgen = self._redis = 0.0
        self._cores: dict[int, tuple[int, int]] = {}
        # Several workers: each one's CPU too (share of one core), in `last_workers`.
        multi = isinstance(system, Roomlogs) and system.workers > 1
        self.worker_pids = system.worker_pids() if isinstance(system, Roomlogs) and multi else []
        self._workers: list[float] = []
        self.last_workers: list[float] = []

    def _worker_cpu(self) -> list[float]:
        out = []
        for pid in self.worker_pids:
            try:
                out.append(proc_cpu_seconds(pid))
            except (OSError, ValueError):
                out.append(math.nan)
        return out

    def _redis_cpu(self) -> float:
        return proc_cpu_seconds(self.redis_pid)

    def start(self) -> None:
        self._t = time.monotonic()
        self._server = self.system.cpu_seconds()
        self._redis = self._redis_cpu()
        self._loadgen = time.process_time()
        self._workers = self._worker_cpu()
        self._cores = core_times()

    def stop(self) -> tuple[Usage, float]:
        wall = max(time.monotonic() - self._t, 1e-9)
        server = self.system.cpu_seconds() - self._server
        self.last_workers = [
            (b - a) / wall for a, b in zip(self._workers, self._worker_cpu(), strict=True)
        ]
        cores: dict[int, float] = {}
        for cpu, (busy, total) in core_times().items():
            b0, t0 = self._cores.get(cpu, (busy, total))
            cores[cpu] = (busy - b0) / max(total - t0, 1)
        usage = Usage(
            wall=wall,
            server=server / wall,
            loadgen=(time.process_time() - self._loadgen) / wall,
            redis=(self._redis_cpu() - self._redis) / wall,
            cores=cores,
        )
        return usage, server


@dataclass
class Ctx:
    args: argparse.Namespace
    pool: Pool
    recorder: Recorder
    publisher: Publisher
    logs: LogFactory
    meter: Meter
    server_cores: list[int] | None  # None when not pinned


async def run_step(
    ctx: Ctx, rate_logs: float, seconds: float, *, latency_all: bool = False
) -> Step:
    """Publish `rate_logs` logs/s (round-robin over the rooms) for about `seconds`, then wait
    for every stream to have every log of its room. Sustained: every stream got every log, none
    was closed, the last log arrived within 10 % of the step + 0.2 s of its send, and the p99
    latency on the sampled streams stayed within --max-p99-ms (as bench.fanout)."""
    pool, rec, args = ctx.pool, ctx.recorder, ctx.args
    n = len(pool)
    rooms = len(pool.rooms)
    per_room = n / rooms
    count = max(5, rooms, round(rate_logs * seconds))
    pool.rebase()
    total0, reads0 = rec.total, rec.reads
    rec.latencies = array("d")
    saved = [s.sampled for s in pool.streams]
    if latency_all:
        for s in pool.streams:
            s.sampled = True
    rec.recording = True
    ctx.meter.start()
    try:
        run = await publish_at(
            ctx.publisher, ctx.logs, rooms, rate_logs, count, time_limit=seconds * 3
        )
        span = max(run.last_wall - run.first_wall, 1e-3)
        lag_limit = 0.1 * span + 0.2
        hard = time.monotonic() + max(2.0, 2 * lag_limit)
        behind = await pool.wait_all(run.per_room, hard)
        usage, server_cpu = ctx.meter.stop()
    finally:
        rec.recording = False
        if latency_all:
            for s, was in zip(pool.streams, saved, strict=True):
                s.sampled = was
    complete = not behind
    delivered = rec.total - total0
    expected = sum(run.per_room[s.room] for s in pool.streams)
    done_wall = max((s.last_rx for s in pool.streams), default=run.last_wall)
    lag = done_wall - run.last_wall if complete else math.inf
    achieved = delivered * (run.sent - 1) / run.sent / max(done_wall - run.first_wall, 1e-3)
    dead = len(pool.dead())
    latency = Latency.of(rec.latencies) if rec.latencies else None
    p99_ok = latency is None or latency.p99_ms <= args.max_p99_ms
    cores = ctx.server_cores
    server_busy = max((usage.cores.get(c, 0.0) for c in cores), default=0.0) if cores else 0.0
    client_busy = usage.cores.get(args.client_cpu, 0.0) if args.client_cpu is not None else 0.0
    own_on_server = usage.server / len(cores) if cores else usage.server
    shared = bool(cores) and args.client_cpu in (cores or ())
    if shared and cores:
        # The server shares the client core: whatever the cores did beyond our three processes.
        busy_all = sum(usage.cores.get(c, 0.0) for c in cores)
        other_client = max(0.0, busy_all - usage.server - usage.client_side)
    else:
        other_client = max(0.0, client_busy - usage.client_side)
    result = Step(
        workers=ctx.meter.last_workers,
        rate_logs=rate_logs,
        offered=rate_logs * per_room,
        sent=run.sent,
        expected=expected,
        delivered=delivered,
        achieved=achieved,
        lag_s=lag,
        lag_limit_s=lag_limit,
        complete=complete,
        sustained=complete and dead == 0 and lag <= lag_limit and p99_ok,
        server_cpu_us_per_delivery=server_cpu * 1e6 / max(delivered, 1),
        publish_rate=(run.sent - 1) / span,
        server_core=usage.server,
        loadgen_core=usage.loadgen,
        redis_core=usage.redis,
        cores=usage.cores,
        other_server_core=0.0 if shared else max(0.0, server_busy - own_on_server),
        other_client_core=other_client,
        reads_per_delivery=(rec.reads - reads0) / max(delivered, 1),
        latency=latency,
        dead_streams=dead,
    )
    rec.latencies = array("d")
    if not complete:
        await pool.wait_all(run.per_room, time.monotonic() + max(10.0, span * 3))
        result.delivered_after_drain = rec.total - total0
    return result


def bottleneck(step: StepResult, ctx: Ctx) -> str | None:
    """What was saturated in `step`: the server's core(s), the client core (and by whom)."""
    cores = ctx.server_cores
    sides: list[str] = []
    if cores and ctx.args.client_cpu in cores:
        return shared_bottleneck(step, cores, ctx.args.client_cpu)
    if cores:
        shared = ctx.args.client_cpu in cores
        server_sat = step.server_core >= SATURATED * len(cores) or (
            not shared and all(step.cores.get(c, 0.0) >= SATURATED for c in cores)
        )
        if server_sat:
            mine = step.server_core >= OWN_SHARE * len(cores)
            sides.append("server CPU" if mine else "server core shared with other processes")
    elif step.server_core >= SATURATED:
        sides.append("server CPU")
    client = ctx.args.client_cpu
    client_busy = step.cores.get(client, 0.0) if client is not None else step.loadgen_core
    own = step.loadgen_core + step.redis_core
    if client_busy >= SATURATED or own >= SATURATED:
        if own >= OWN_SHARE:
            who = "load generator"
            if step.redis_core >= 0.4:
                who = (
                    f"client core (load generator {step.loadgen_core:.0%}, "
                    f"redis {step.redis_core:.0%})"
                )
            sides.append(who)
        elif cores and client in cores:
            sides.append("client core (shared with the server)")
        else:
            sides.append("client core shared with other processes")
    return " + ".join(sides) or None


def shared_bottleneck(step: StepResult, cores: Sequence[int], client: int) -> str | None:
    """What was full when the server's workers share the load generator's core: which cores,
    and how the busy time split between the server and the client side (load generator +
    redis). With every core full, neither side alone is the limit: the machine's CPU is."""
    full = [c for c in cores if step.cores.get(c, 0.0) >= SATURATED]
    client_side = step.loadgen_core + step.redis_core
    split = f"server {step.server_core:.2f} cores, client {client_side:.2f}"
    busy_all = sum(step.cores.get(c, 0.0) for c in cores)
    if busy_all - step.server_core - client_side >= NOISY:
        split += f", other processes {busy_all - step.server_core - client_side:.2f}"
    if len(full) == len(cores):
        return f"both cores ({split})"
    if full == [client]:
        idle = [c for c in cores if c != client]
        spare = ", ".join(f"core {c} {step.cores.get(c, 0.0):.0%}" for c in idle)
        return f"core {client} (load generator's; {split}; {spare})"
    if full:
        return f"core {full[0]} ({split}; core {client} {step.cores.get(client, 0.0):.0%})"
    return None


def _noisy(step: StepResult) -> bool:
    return max(step.other_server_core, step.other_client_core) >= NOISY


async def find_max(ctx: Ctx, run: Run, start: float) -> None:
    """Step the offered deliveries/s up by --growth until a step fails, then bisect down to
    --resolution (as bench.fanout); a failed step during outside load is run once more."""
    args = ctx.args
    per_room = len(ctx.pool) / len(ctx.pool.rooms)
    lo: float | None = None
    hi: float | None = None
    rate = start
    for _ in range(args.max_steps):
        step = await run_step(ctx, rate / per_room, args.step_seconds)
        _log(step.line())
        if not step.sustained and step.complete and not step.dead_streams and _noisy(step):
            run.steps.append(step)
            await wait_quiet(args, _log)
            step = await run_step(ctx, rate / per_room, args.step_seconds)
            step.retried = True
            _log(step.line() + " (retry: the first run was noisy)")
        run.steps.append(step)
        if step.sustained:
            lo = rate
            if run.max_sustained is None or step.achieved > run.max_sustained.achieved:
                run.max_sustained = step
            # Unlike bench.fanout, keep stepping when the load generator's core is full: the
            # systems coalesce differently, and a cut here would rank them by how many reads
            # they cost the client rather than by what they sustain. The limit column says it.
            note = "the load generator's core was saturated in a sustained step"
            if "load generator" in (bottleneck(step, ctx) or "") and note not in run.notes:
                run.notes.append(note)
        else:
            hi = rate
            if run.first_failure is None or rate < run.first_failure.offered:
                run.first_failure = step
            if step.dead_streams or (not step.complete and ctx.pool.behind(_owed(step, ctx))):
                run.notes.append("streams lost logs or were closed: stepping stopped")
                break
        if hi is None:
            rate *= args.growth
        elif lo is None:
            rate /= args.growth
            if rate / per_room * args.step_seconds < 2:
                run.notes.append(
                    "not sustained even at a couple of logs per step: one log's fan-out alone "
                    "breaks the lag or p99 rule"
                )
                break
        else:
            if hi / lo < 1.0 + args.resolution:
                break
            rate = math.sqrt(lo * hi)
    if run.max_sustained is None:
        run.limit = "nothing sustained"
    elif run.first_failure is None:
        saturated = bottleneck(run.max_sustained, ctx)
        run.limit = f"{saturated} (no step failed)" if saturated else "not reached"
    else:
        run.limit = bottleneck(run.first_failure, ctx) or "unclear: no core saturated"
    if any(_noisy(s) for s in run.steps):
        worst = max(max(s.other_server_core, s.other_client_core) for s in run.steps)
        run.notes.append(f"other processes used up to {worst:.0%} of a core during steps")


def _owed(step: StepResult, ctx: Ctx) -> list[int]:
    """Logs each room was owed in `step` (for a drained-step check): an even share."""
    rooms = len(ctx.pool.rooms)
    return [step.sent // rooms + (1 if r < step.sent % rooms else 0) for r in range(rooms)]


# -- one case, one system --------------------------------------------------------------------


def make_system(key: str, case: Case, args: argparse.Namespace, redis_url: str) -> System:
    cpus = None if args.server_cpu is None else str(args.server_cpu)
    if case.workers > 1:
        # Both cores for the workers (the load generator and Redis stay on theirs): `float`
        # lets the scheduler place each worker, `split` pins worker i to one core each.
        cores = workers_cores(args)
        cpus = None if cores is None else ",".join(map(str, cores))
        system = Roomlogs(
            redis_url,
            args.workdir,
            cpus,
            case.streams,
            workers=case.workers,
            source=args.source,
            query=case.query,
        )
        if cores is not None and args.workers_pin == "split":
            system.worker_cpus = [{cores[i % len(cores)]} for i in range(case.workers)]
        return system
    if key == "roomlogs":
        return Roomlogs(
            redis_url, args.workdir, cpus, case.streams, source=args.source, query=case.query
        )
    return SYSTEMS[key](redis_url, args.workdir, cpus, case.streams)


async def pubsub_clients(redis_url: str) -> int | None:
    client = aioredis.Redis.from_url(redis_url, protocol=2)
    try:
        raw = await client.execute_command(  # type: ignore[no-untyped-call]
            "CLIENT", "LIST", "TYPE", "pubsub"
        )
    except (OSError, aioredis.RedisError):
        return None
    finally:
        await client.aclose()
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return len([line for line in text.splitlines() if line.strip()])


async def flush_redis(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, protocol=2)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


def workers_cores(args: argparse.Namespace) -> list[int] | None:
    """The cores of a WORKERS>1 case: --workers-cpus, else the server's and the client's."""
    if args.server_cpu is None:
        return None
    return list(args.workers_cpus or [args.server_cpu, args.client_cpu])


def pinning(args: argparse.Namespace, case: Case) -> str:
    """Where the system's processes ran, in words."""
    cores = workers_cores(args)
    if cores is None:
        return "unpinned"
    if case.workers == 1:
        return f"core {args.server_cpu}"
    names = "+".join(map(str, cores))
    shared = args.client_cpu in cores
    if args.workers_pin == "split":
        text = f"one worker per core ({names})"
    elif args.workers_pin == "none" and shared:
        return f"nothing pinned: workers, load generator and redis on cores {names}"
    else:
        text = f"cores {names}, placed by the scheduler"
    return text + (f", core {args.client_cpu} shared with the load generator" if shared else "")


@contextlib.contextmanager
def unpinned_client(args: argparse.Namespace, redis: PrivateRedis, case: Case) -> Iterator[None]:
    """`--workers-pin none`: the load generator (this thread) and redis-server may run on
    both cores for a WORKERS>1 case, and go back to the client core after it."""
    cores = workers_cores(args)
    if case.workers == 1 or args.workers_pin != "none" or cores is None:
        yield
        return
    both = set(cores) | {args.client_cpu}
    os.sched_setaffinity(0, both)
    os.sched_setaffinity(redis.pid, both)
    try:
        yield
    finally:
        os.sched_setaffinity(0, {args.client_cpu})
        with contextlib.suppress(OSError):
            os.sched_setaffinity(redis.pid, {args.client_cpu})


async def run_case(
    args: argparse.Namespace, redis: PrivateRedis, key: str, case: Case, start: float
) -> Run:
    system = make_system(key, case, args, redis.url)
    run = Run(
        system=system.key,
        label=system.label,
        case=case.name,
        rooms=case.rooms,
        per_room=case.per_room,
        streams=case.streams,
        workers=case.workers,
        pinning=pinning(args, case),
        stream_query=system.query,
    )
    _log(f"\n== {case.title}: {system.label} (log {system.log_path})")
    busy = await wait_quiet(args, _log)
    if busy >= NOISY / 2:
        run.notes.append(f"machine not quiet at start: a core {busy:.0%} busy")
    system.start()
    try:
        await system.wait_ready()
        with unpinned_client(args, redis, case):
            await measure(args, run, system, redis, case, start)
        run.counters = await system.counters()
    except SetupError as exc:
        run.error = str(exc)
        run.limit = "setup failed"
        _log(f"  {system.key}: {exc}")
    finally:
        system.stop()
        with contextlib.suppress(Exception):
            await flush_redis(redis.url)
    return run


async def measure(
    args: argparse.Namespace,
    run: Run,
    system: System,
    redis: PrivateRedis,
    case: Case,
    start: float,
) -> None:
    tag = secrets.token_hex(3)
    rooms = [f"bench-{case.name}-{tag}-{i}" for i in range(case.rooms)]
    warm_room = f"bench-warm-{tag}"
    token = mint_token(SECRET, rooms=["*"], ttl=6 * 3600, sub="bench")
    recorder = Recorder()
    publisher = system.publisher([*rooms, warm_room])
    logs = LogFactory(args.payload_bytes)

    def request(room: str) -> bytes:
        return system.request(room, token)

    try:
        # Warm-up: the code paths of a stream and of a delivery run once before RSS is read.
        warm = Pool(system.port, [warm_room], request, system.framing, recorder)
        await warm.open(10, concurrency=10, sampled=0)
        warm.rebase()
        for _ in range(3):
            await publisher.send([(len(rooms), logs.batch(1)[0])])
        await warm.wait_all([3], time.monotonic() + 5)
        await warm.close()
        await asyncio.sleep(0.5)
        run.rss_before_kib = system.rss_kib()

        pool = Pool(system.port, rooms, request, system.framing, recorder)
        t0 = time.monotonic()
        await pool.open(
            case.per_room, concurrency=args.connect_concurrency, sampled=args.sampled_streams
        )
        run.connect_s = time.monotonic() - t0
        gc.collect()
        gc.freeze()
        await asyncio.sleep(args.settle)
        meter = Meter(system, redis.pid)
        meter.start()
        await asyncio.sleep(1.0)
        idle, _ = meter.stop()
        run.idle_server_core = idle.server
        run.rss_after_kib = system.rss_kib()
        run.rss_per_stream_kib = (run.rss_after_kib - run.rss_before_kib) / case.streams
        if system.uses_redis:
            run.redis_subscriptions = await pubsub_clients(redis.url)
        if isinstance(system, Roomlogs) and system.workers > 1:
            run.worker_streams = system.worker_streams()
            _log(f"  streams per worker (SO_REUSEPORT): {run.worker_streams}")
            if sum(run.worker_streams) != case.streams:
                run.notes.append(
                    f"the workers hold {sum(run.worker_streams):,} connections, "
                    f"not {case.streams:,}"
                )
        _log(
            f"  opened {case.streams:,} streams in {run.connect_s:.2f}s; server RSS "
            f"{run.rss_before_kib / 1024:.1f} -> {run.rss_after_kib / 1024:.1f} MiB "
            f"({run.rss_per_stream_kib:.1f} KiB/stream), idle CPU {idle.server:.1%}, "
            f"Redis subscriptions {run.redis_subscriptions}"
        )
        if case.idle:
            await pool.close()
            return

        cores = None
        if args.server_cpu is not None:
            cores = [args.server_cpu] if case.workers == 1 else workers_cores(args)
        ctx = Ctx(args, pool, recorder, publisher, logs, meter, cores)
        await find_max(ctx, run, start)

        best = run.max_sustained
        if best is not None and not any("lost" in note for note in run.notes):
            deliveries = min(args.latency_deliveries, args.latency_load * best.achieved)
            rate = deliveries / case.per_room
            await wait_quiet(args, _log)
            run.latency_rate_logs = rate
            tap = None
            if system.uses_redis and case.rooms == 1:
                tap = await RedisTap.open(redis.port, PLAIN.channel(rooms[0]), recorder)
            try:
                step = await run_step(ctx, rate, args.latency_seconds, latency_all=True)
            finally:
                if tap is not None:
                    tap.close()
            run.latency_step = step
            if tap is not None and tap.latencies:
                run.redis_floor = Latency.of(tap.latencies)
            _log("  latency:" + step.line())
            if not step.sustained:
                run.notes.append("the latency phase was not sustained")
        await pool.close()
    finally:
        gc.unfreeze()
        await publisher.close()


# -- report ------------------------------------------------------------------------------------


def _f(value: float, spec: str) -> str:
    return NA if value is None or math.isnan(value) else format(value, spec)


def _find(runs: Sequence[Run], system: str, case: str) -> Run | None:
    for r in runs:
        if r.system == system and r.case == case:
            return r
    return None


def _lat(run: Run | None) -> Latency | None:
    return run.latency_step.latency if run and run.latency_step else None


def _systems(runs: Sequence[Run]) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for r in runs:
        if r.workers == 1:
            seen.setdefault(r.system, r.label)
    return sorted(seen.items(), key=lambda kv: ORDER.index(kv[0]) if kv[0] in ORDER else 99)


def summary_table(runs: Sequence[Run], cases: Sequence[Case], key_case: str) -> str:
    rate_cases = [c for c in cases if not c.idle and c.workers == 1]
    idle_case = next((c for c in cases if c.idle), None)
    head = ["system"]
    head += [f"{c.title}: deliveries/s" for c in rate_cases]
    head += [
        f"µs CPU / delivery at max ({key_case})",
        f"µs CPU / delivery, one log at a time ({key_case})",
        f"p50 / p99 ms ({key_case})",
    ]
    if idle_case:
        head.append(f"KiB / idle stream ({idle_case.streams:,})")
    head.append(f"Redis subscriptions ({key_case})")
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for system, label in _systems(runs):
        cells = [label]
        for c in rate_cases:
            r = _find(runs, system, c.name)
            cells.append(_f(r.best, ",.0f") if r else NA)
        k = _find(runs, system, key_case)
        best = k.max_sustained if k else None
        cells.append(_f(best.server_cpu_us_per_delivery, ".2f") if best else NA)
        ls = k.latency_step if k else None
        cells.append(_f(ls.server_cpu_us_per_delivery, ".2f") if ls else NA)
        lat = _lat(k)
        cells.append(f"{lat.p50_ms:.1f} / {lat.p99_ms:.1f}" if lat else NA)
        if idle_case:
            i = _find(runs, system, idle_case.name)
            cells.append(_f(i.rss_per_stream_kib, ".1f") if i else NA)
        subs = k.redis_subscriptions if k else None
        cells.append(str(subs) if subs is not None else ("none (HTTP publish)" if k else NA))
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def detail_table(runs: Sequence[Run]) -> str:
    head = [
        "case",
        "system",
        "max sustained deliveries/s",
        "at logs/s",
        "logs / read",
        "server µs / delivery at max",
        "server core at max",
        "≈ deliveries/s at 100 % server core",
        "client core at max",
        "latency phase logs/s",
        "µs / delivery, latency phase",
        "p50 / p90 / p99 ms",
        "Redis-only p50 / p99 ms",
        "RSS KiB / stream",
        "limited by",
    ]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        b = r.max_sustained
        ls = r.latency_step
        lat = ls.latency if ls else None
        floor = r.redis_floor
        server_cores = max(1, r.workers)
        cells = [
            r.case,
            r.label,
            _f(r.best, ",.0f"),
            _f(b.rate_logs, ",.1f") if b else NA,
            _f(1 / max(b.reads_per_delivery, 1e-9), ".1f") if b else NA,
            _f(b.server_cpu_us_per_delivery, ".2f") if b else NA,
            _f(b.server_core, ".0%") if b else NA,
            _f(b.achieved / max(b.server_core / server_cores, 1e-9) * server_cores, ",.0f")
            if b and server_cores == 1
            else NA,
            f"{b.loadgen_core:.0%} + redis {b.redis_core:.0%}" if b else NA,
            _f(r.latency_rate_logs, ",.1f"),
            _f(ls.server_cpu_us_per_delivery, ".2f") if ls else NA,
            f"{lat.p50_ms:.1f} / {lat.p90_ms:.1f} / {lat.p99_ms:.1f}" if lat else NA,
            f"{floor.p50_ms:.2f} / {floor.p99_ms:.2f}" if floor else NA,
            _f(r.rss_per_stream_kib, ".1f"),
            r.error or r.limit,
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


@dataclass
class Target:
    what: str
    roomlogs: float
    reference: float
    reference_name: str
    ratio: float
    goal: str
    met: bool | None


def targets(runs: Sequence[Run], args: argparse.Namespace) -> list[Target]:
    out: list[Target] = []
    key = f"1x{args.key_streams}"

    def ratio_row(
        what: str, case: str, ref: str, goal: float, higher: bool, value: Callable[[Run], float]
    ) -> None:
        mine, theirs = _find(runs, "roomlogs", case), _find(runs, ref, case)
        a = value(mine) if mine else math.nan
        b = value(theirs) if theirs else math.nan
        ratio = a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan
        met = None if math.isnan(ratio) else (ratio >= goal if higher else ratio <= goal)
        sign = "≥" if higher else "≤"
        out.append(Target(what, a, b, ref, ratio, f"{sign} {goal:g}x", met))

    def p99(r: Run) -> float:
        lat = _lat(r)
        return lat.p99_ms if lat else math.nan

    def best(r: Run) -> float:
        return r.best

    ratio_row(f"{key} deliveries/s vs minimal", key, "minimal", 0.5, True, best)
    ratio_row(f"{key} deliveries/s vs nchan", key, "nchan", 2.0, True, best)
    ratio_row(f"{key} p99 latency vs minimal", key, "minimal", 1.25, False, p99)
    rooms_case = f"{args.rooms[0]}x{args.rooms[1]}" if args.rooms else None
    if rooms_case:
        ratio_row(f"{rooms_case} deliveries/s vs minimal", rooms_case, "minimal", 0.8, True, best)
    idle = _find(runs, "roomlogs", "idle")
    if idle is not None:
        kib = idle.rss_per_stream_kib
        nchan = _find(runs, "nchan", "idle")
        out.append(
            Target(
                f"KiB per idle stream ({idle.streams:,} streams)",
                kib,
                nchan.rss_per_stream_kib if nchan else math.nan,
                "nchan",
                kib / 8.0,
                "≤ 8 KiB",
                None if math.isnan(kib) else kib <= 8.0,
            )
        )
    subs = [
        r.redis_subscriptions
        for r in runs
        if r.system.startswith("roomlogs") and r.redis_subscriptions is not None
    ]
    if subs:
        worst = max(
            s / max(1, r.workers)
            for r in runs
            if r.system.startswith("roomlogs") and (s := r.redis_subscriptions) is not None
        )
        out.append(
            Target(
                "Redis subscriptions per worker (any case)",
                worst,
                math.nan,
                "",
                worst,
                "= 1",
                worst == 1,
            )
        )
    return out


def targets_table(rows: Sequence[Target]) -> str:
    head = ["target (issue 4)", "roomlogs", "reference", "ratio", "goal", "met"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in rows:
        ref = f"{t.reference_name} {_f(t.reference, ',.1f')}" if t.reference_name else ""
        met = NA if t.met is None else ("yes" if t.met else "**no**")
        ratio = _f(t.ratio, ".2f") + "x" if "KiB" not in t.what and t.reference_name else ""
        out.append(f"| {t.what} | {_f(t.roomlogs, ',.1f')} | {ref} | {ratio} | {t.goal} | {met} |")
    return "\n".join(out)


def _lost(run: Run) -> bool:
    """Whether any stream missed a log for good in any step (late logs are not lost)."""
    for s in run.steps:
        if s.dead_streams:
            return True
        if not s.complete and (s.delivered_after_drain or 0) < s.expected:
            return True
    return False


def _cores(step: Step | None) -> str:
    if step is None:
        return NA
    return " / ".join(f"{step.cores.get(c, 0.0):.0%}" for c in sorted(step.cores))


def _server(step: Step | None) -> str:
    if step is None:
        return NA
    text = _f(step.server_core, ".2f")
    if step.workers:
        text += " (" + " + ".join(f"{w:.2f}" for w in step.workers) + ")"
    return text


def two_core_bound(one: Run) -> tuple[float, float, float]:
    """From WORKERS=1's step at its max: server and client (load generator + redis) µs per
    delivery, and what two fully shared cores would give at those costs: 2 / (c_s + c_l)."""
    b = one.max_sustained
    if b is None or not b.achieved:
        return math.nan, math.nan, math.nan
    c_s = b.server_core / b.achieved * 1e6
    c_l = (b.loadgen_core + b.redis_core) / b.achieved * 1e6
    return c_s, c_l, 2e6 / (c_s + c_l)


def workers_table(runs: Sequence[Run]) -> str | None:
    pairs = []
    for two in (r for r in runs if r.workers > 1):
        one = _find(runs, "roomlogs", two.case.removesuffix("-w2"))
        if one is not None:
            pairs.append((one, two))
    if not pairs:
        return None
    head = [
        "case",
        "roomlogs",
        "where",
        "max sustained deliveries/s",
        "peak achieved, any step (latency unbounded)",
        "cores 0 / 1 busy at max",
        "server cores at max (per worker)",
        "client cores at max (load generator + redis)",
        "streams per worker",
        "Redis subscriptions",
        "every stream every log",
        "limited by (first failed step)",
    ]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines = []
    for one, two in pairs:
        for r in (one, two):
            b = r.max_sustained
            peak = r.peak
            out.append(
                "| "
                + " | ".join(
                    [
                        r.case.removesuffix("-w2"),
                        f"WORKERS={r.workers}",
                        r.pinning,
                        _f(r.best, ",.0f"),
                        _f(peak.achieved, ",.0f") if peak else NA,
                        _cores(b),
                        _server(b),
                        _f(b.loadgen_core + b.redis_core, ".2f") if b else NA,
                        " / ".join(f"{n:,}" for n in r.worker_streams) or f"{r.streams:,}",
                        str(r.redis_subscriptions) if r.redis_subscriptions is not None else NA,
                        "**no**" if _lost(r) else ("yes" if r.steps else NA),
                        r.error or r.limit,
                    ]
                )
                + " |"
            )
        ratio = two.best / one.best if one.best else math.nan
        p1, p2 = one.peak, two.peak
        peak_ratio = p2.achieved / p1.achieved if p1 and p2 and p1.achieved else math.nan
        c_s, c_l, bound = two_core_bound(one)
        lines.append(
            f"- {one.case}: WORKERS={two.workers} / WORKERS=1 = **{_f(ratio, '.2f')}x** max "
            f"sustained, {_f(peak_ratio, '.2f')}x peak achieved. At WORKERS=1's max the server "
            f"used {_f(c_s, '.3f')} µs and the client side {_f(c_l, '.3f')} µs of CPU per "
            f"delivery: two cores shared by both give at most 2 / (c_s + c_l) ≈ "
            f"{_f(bound, ',.0f')}/s ({_f(bound / one.best if one.best else math.nan, '.2f')}x), "
            "if the costs per delivery stay the same."
        )
    out += ["", *lines]
    return "\n".join(out)


def markdown(runs: Sequence[Run], cases: Sequence[Case], args: argparse.Namespace) -> str:
    key = case_name(f"1x{args.key_streams}", args)
    parts = ["### Summary", "", summary_table(runs, cases, key), "", "### Targets", ""]
    if args.stream_query:
        parts.append(
            f"Not computed: roomlogs' streams were opened with `?{args.stream_query}` (the "
            "hub's per-stream path), the peers' without (they have no filters); issue 4's "
            "targets are defined on unfiltered streams."
        )
    else:
        parts.append(targets_table(targets(runs, args)))
    workers = workers_table(runs)
    if workers:
        parts += ["", "### WORKERS=2 against WORKERS=1", "", workers]
    parts += ["", "### Every case", "", detail_table(runs)]
    notes = [f"- {r.case} {r.label}: {'; '.join(r.notes)}" for r in runs if r.notes and not r.error]
    notes += [f"- {r.case} {r.label}: setup failed: {r.error}" for r in runs if r.error]
    if notes:
        parts += ["", "Notes:", *notes]
    return "\n".join(parts)


def write_json(path: Path, runs: Sequence[Run], args: argparse.Namespace) -> None:
    config = {
        k: str(v) if isinstance(v, Path) else v
        for k, v in vars(args).items()
        if k not in ("started", "workdir", "quiet_left")
    }
    doc = {
        "benchmark": "compare",
        "started": args.started,
        "command": " ".join([Path(sys.executable).name, "-m", "bench.compare", *sys.argv[1:]]),
        "config": config,
        "environment": {**environment(), "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)},
        "targets": [] if args.stream_query else [asdict(t) for t in targets(runs, args)],
        "runs": [asdict(r) for r in runs],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(_clean(doc), option=orjson.OPT_INDENT_2) + b"\n")


# -- main ----------------------------------------------------------------------------------------


def _counts(raw: str) -> list[int]:
    values = [int(part) for part in raw.split(",") if part.strip()]
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("expected positive counts such as 100,1000,5000")
    return values


def _rooms(raw: str) -> tuple[int, int] | None:
    if raw in ("", "0", "none"):
        return None
    rooms, _, per_room = raw.partition("x")
    try:
        value = (int(rooms), int(per_room))
    except ValueError:
        raise argparse.ArgumentTypeError("expected ROOMSxSTREAMS, e.g. 1000x2") from None
    if min(value) < 1:
        raise argparse.ArgumentTypeError("expected ROOMSxSTREAMS, e.g. 1000x2")
    return value


def _cpus(raw: str) -> list[int]:
    try:
        values = sorted({int(part) for part in raw.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError("expected core numbers such as 0,2") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError("expected core numbers such as 0,2")
    return values


def _stream_query(raw: str) -> str:
    """A query string for roomlogs' stream GET that filters (so the stream takes the hub's
    per-stream path) yet passes every log the bench publishes (so the no-loss checks hold)."""
    if raw in ("", "?"):
        return ""  # no query: the plain GET (argparse also converts the default through here)
    pairs = urllib.parse.parse_qsl(raw.removeprefix("?"), keep_blank_values=True)
    sample = orjson.loads(LogFactory(0).batch(1)[0])
    known = {"agentType", "level"}
    if not pairs or any(k not in known for k, _ in pairs):
        raise argparse.ArgumentTypeError("expected agentType=... and/or level=...")
    for key, value in pairs:
        if key == "agentType" and value != sample["agentType"]:
            raise argparse.ArgumentTypeError(
                f"the bench's logs all have agentType {sample['agentType']!r}: "
                f"agentType={value} would drop every log"
            )
        if key == "level":
            if value not in LEVELS or LEVELS.index(value) > LEVELS.index(sample["level"]):
                raise argparse.ArgumentTypeError(
                    f"the bench's logs all have level {sample['level']!r}: use level="
                    f"{'/'.join(LEVELS[1 : LEVELS.index(sample['level']) + 1])}"
                )
            if value == LEVELS[0]:
                raise argparse.ArgumentTypeError(
                    f"level={value} filters nothing (the stream stays on the shared path)"
                )
    return urllib.parse.urlencode(pairs)


def case_name(name: str, args: argparse.Namespace) -> str:
    """`1x1000-filtered` when roomlogs' streams carry --stream-query."""
    return f"{name}-filtered" if args.stream_query else name


def _system_list(raw: str) -> list[str]:
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    unknown = [k for k in keys if k not in SYSTEMS]
    if unknown or not keys:
        raise argparse.ArgumentTypeError(f"systems are among {', '.join(SYSTEMS)}")
    return keys


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.compare", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    p.add_argument("--quick", action="store_true", help="1 x 1,000, 1,000 x 2, 2,000 idle, short")
    p.add_argument(
        "--systems",
        type=_system_list,
        default=list(ORDER),
        help="comma-separated, among roomlogs,minimal,nchan,tutorial",
    )
    p.add_argument("--streams", type=_counts, default=None, help="N for 1 room x N (100,1000,5000)")
    p.add_argument(
        "--rooms", type=_rooms, default=(1000, 2), help="many rooms, ROOMSxSTREAMS (1000x2; none)"
    )
    p.add_argument(
        "--idle", type=int, default=None, help="idle streams for memory (10000; 0: none)"
    )
    p.add_argument("--no-workers2", action="store_true", help="skip roomlogs WORKERS=2")
    p.add_argument(
        "--workers-streams",
        type=_counts,
        default=None,
        help="N of --streams for roomlogs WORKERS=2 (default: those >= 1000)",
    )
    p.add_argument(
        "--workers-cpus",
        type=_cpus,
        default=None,
        help="cores for roomlogs WORKERS=2 (default: --server-cpu and --client-cpu; with 3+ "
        "cores, e.g. 0,2 keeps the load generator's core to itself)",
    )
    p.add_argument(
        "--workers-rooms",
        action="store_true",
        help="roomlogs WORKERS=2 on the many-rooms case too",
    )
    p.add_argument(
        "--workers-pin",
        choices=("float", "split", "none"),
        default="float",
        help="WORKERS=2: workers on both cores placed by the scheduler (load generator and "
        "redis stay on theirs), one worker per core, or nothing pinned (load generator and "
        "redis too, for that case only)",
    )
    p.add_argument("--payload-bytes", type=int, default=256, help="size of one log's JSON")
    p.add_argument("--step-seconds", type=float, default=None, help="one rate step (3; quick 2)")
    p.add_argument("--growth", type=float, default=2.0, help="rate factor between steps")
    p.add_argument("--resolution", type=float, default=0.15, help="stop bisecting below this")
    p.add_argument("--max-steps", type=int, default=None, help="rate steps per case (10; quick 8)")
    p.add_argument("--max-p99-ms", type=float, default=500, help="a sustained step's p99 at most")
    p.add_argument(
        "--latency-deliveries",
        type=float,
        default=20000,
        help="latency phase, deliveries/s (1,000 streams x 20 logs/s)",
    )
    p.add_argument(
        "--latency-load",
        type=float,
        default=0.5,
        help="cap the latency phase at this share of the system's max sustained",
    )
    p.add_argument("--latency-seconds", type=float, default=None, help="latency phase (6; quick 3)")
    p.add_argument("--sampled-streams", type=int, default=16, help="latency streams in steps")
    p.add_argument("--connect-concurrency", type=int, default=100, help="streams opening at once")
    p.add_argument("--settle", type=float, default=1.0, help="seconds after opening, before RSS")
    p.add_argument("--server-cpu", type=int, default=0, help="core for the systems")
    p.add_argument("--client-cpu", type=int, default=1, help="core for load generator + redis")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    p.add_argument("--quiet-wait", type=float, default=60, help="wait up to this for idle cores")
    p.add_argument("--quiet-budget", type=float, default=240, help="total quiet waiting at most")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/)")
    p.add_argument("--chart", type=Path, default=DEFAULT_CHART, help="PNG path")
    p.add_argument("--no-chart", action="store_true", help="do not draw the chart")
    p.add_argument("--rev", default=None, help="run roomlogs from this git revision")
    p.add_argument(
        "--stream-query",
        type=_stream_query,
        default="",
        help="query string for roomlogs' streams (WORKERS=1 and 2), e.g. agentType=bench: "
        "filtered streams take the hub's per-stream path; the peers have no filters and get "
        "the plain GET; cases are named <case>-filtered and issue 4's targets are skipped",
    )
    args = p.parse_args(argv)
    quick = args.quick
    if args.streams is None:
        args.streams = [1000] if quick else [100, 1000, 5000]
    if args.idle is None:
        args.idle = 2000 if quick else 10000
    if args.step_seconds is None:
        args.step_seconds = 2.0 if quick else 3.0
    if args.max_steps is None:
        args.max_steps = 8 if quick else 10
    if args.latency_seconds is None:
        args.latency_seconds = 3.0 if quick else 6.0
    args.workers2 = not args.no_workers2 and "roomlogs" in args.systems
    if args.workers_streams is None:
        # Where the server, not the load generator, is the limit of one worker: large N.
        args.workers_streams = [n for n in args.streams if n >= 1000] or [max(args.streams)]
    args.workers_cases = [f"1x{n}" for n in args.workers_streams if n in args.streams]
    if args.workers_rooms and args.rooms:
        args.workers_cases.append(f"{args.rooms[0]}x{args.rooms[1]}")
    args.workers_cases = [case_name(c, args) for c in args.workers_cases]
    if not args.workers2:
        args.workers_cases = []
    args.key_streams = 1000 if 1000 in args.streams else args.streams[len(args.streams) // 2]
    if args.no_pin:
        args.server_cpu = args.client_cpu = None
    args.started = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    args.rev_commit = None
    args.quiet_left = args.quiet_budget
    return args


def plan(args: argparse.Namespace) -> list[Case]:
    q = args.stream_query
    cases = [Case(case_name(f"1x{n}", args), 1, n, query=q) for n in args.streams]
    if args.rooms:
        name = case_name(f"{args.rooms[0]}x{args.rooms[1]}", args)
        rooms, per_room = args.rooms
        cases.append(Case(name, rooms, per_room, query=q))
    if args.idle:
        cases.append(Case(case_name("idle", args), 1, args.idle, idle=True, query=q))
    return cases


async def amain(args: argparse.Namespace) -> int:
    runs: list[Run] = []
    out = args.out or RESULTS_DIR / f"compare-{args.started}.json"
    cases = plan(args)
    redis = PrivateRedis(
        args.client_cpu,
        extra=[
            "--maxclients", str(max(args.idle, max(args.streams)) * 2 + 2000),
            # No pub/sub output limit: a lagging subscriber is late, not disconnected.
            "--client-output-buffer-limit", "pubsub 0 0 0",
        ],
    )  # fmt: skip
    started = time.monotonic()
    # The systems' logs and configs stay next to the JSON (bench/results/ is git-ignored).
    args.workdir = out.with_suffix("").with_name(out.stem + "-logs")
    args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="roomlogs-compare-") as tmp:
        args.source = ROOT
        try:
            if args.rev:
                args.source = Path(tmp) / "src"
                args.source.mkdir()
                args.rev_commit = export_revision(args.rev, args.source)
                _log(f"roomlogs from {args.rev} ({args.rev_commit[:12]}), not the work tree")
            redis.start()
            best: dict[str, float] = {}
            for case in cases:
                for key in args.systems:
                    if case.rooms == 1 and not case.idle:
                        start = best[key] / 2 if key in best else FIRST_RATE[key]
                    else:
                        start = min(20_000.0, FIRST_RATE[key])
                    this = case
                    note = None
                    if case.idle and key == "tutorial" and 2 * case.streams + 300 > args.nofile:
                        # Two descriptors per stream there: the client's and its Redis pub/sub.
                        this = Case(
                            case.name, 1, (args.nofile - 300) // 2, idle=True, query=case.query
                        )
                        note = (
                            f"{this.streams:,} idle streams, not {case.streams:,}: two file "
                            f"descriptors per stream and an open file limit of {args.nofile:,}"
                        )
                    run = await run_case(args, redis, key, this, start)
                    if note:
                        run.notes.append(note)
                    runs.append(run)
                    if case.rooms == 1 and run.max_sustained is not None:
                        best[key] = run.max_sustained.achieved
                    write_json(out, runs, args)  # what is done so far survives a crash
                    if key == "roomlogs" and case.name in args.workers_cases:
                        # Right after WORKERS=1 on the same N, from the same first rate (the
                        # same grid of offered rates until a step fails).
                        two = Case(
                            f"{case.name}-w2",
                            case.rooms,
                            case.per_room,
                            workers=2,
                            query=case.query,
                        )
                        runs.append(await run_case(args, redis, "roomlogs", two, start))
                        write_json(out, runs, args)
        except SetupError as exc:
            _log(f"setup failed: {exc}")
            write_json(out, runs, args)
            return 1
        finally:
            redis.stop()
    write_json(out, runs, args)
    print(markdown(runs, cases, args))
    print(f"\nJSON: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    if args.stream_query and args.chart == DEFAULT_CHART and not args.no_chart:
        # The committed chart is of unfiltered streams: a filtered run draws only on request.
        _log(f"no chart: --stream-query given and no --chart PATH other than {DEFAULT_CHART}")
    elif not args.no_chart:
        try:
            from .chart import draw

            draw(orjson.loads(out.read_bytes()), args.chart)
            chart = args.chart
            print(f"chart: {chart.relative_to(ROOT) if chart.is_relative_to(ROOT) else chart}")
        except ImportError as exc:
            _log(f"no chart: {exc} (pip install -e '.[bench]')")
    _log(f"took {(time.monotonic() - started) / 60:.1f} min")
    return 0


def raise_nofile(needed: int) -> int:
    """Soft and, as root, hard RLIMIT_NOFILE up to `needed` (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    if hard == resource.RLIM_INFINITY or hard >= needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        return needed
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
        return needed
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cpus = os.sched_getaffinity(0)
    if args.server_cpu is not None:
        if not {args.server_cpu, args.client_cpu} <= cpus or args.server_cpu == args.client_cpu:
            _log(f"setup failed: need two distinct cores among {sorted(cpus)}; or use --no-pin")
            return 1
        if args.workers_cpus and not set(args.workers_cpus) <= cpus:
            _log(f"setup failed: --workers-cpus must be among {sorted(cpus)}")
            return 1
        os.sched_setaffinity(0, {args.client_cpu})
    # Client sockets, plus (the tutorial pattern) as many Redis connections in redis-server.
    biggest = max([args.idle, *args.streams, args.rooms[0] * args.rooms[1] if args.rooms else 0])
    needed = biggest * 2 + 4096
    limit = args.nofile = raise_nofile(needed)
    if limit < biggest + 1024:
        shrunk = max(100, limit - 1024) // 2
        _log(f"open file limit {limit} < {needed}: idle streams cut to {shrunk}")
        args.idle = min(args.idle, shrunk)
        args.streams = [min(n, shrunk) for n in args.streams]
    missing = [
        name
        for name, needed_by in (("uvloop", True), ("sse_starlette", "tutorial" in args.systems))
        if needed_by and importlib.util.find_spec(name) is None
    ]
    missing += [] if args.no_chart or importlib.util.find_spec("matplotlib") else ["matplotlib"]
    if missing:
        _log(f"setup failed: {', '.join(missing)} missing: .venv/bin/pip install -e '.[bench]'")
        return 1
    if "nchan" in args.systems:
        why = ensure_nchan()
        if why is not None:
            _log(f"nchan skipped: {why}")
            args.systems = [k for k in args.systems if k != "nchan"]
    import uvloop

    return uvloop.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
