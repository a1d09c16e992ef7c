"""One system on one case, start to stop: what both commands do for every row of their tables.

1. start the system and wait until it is ready;
2. warm it up (10 streams on a room of their own, 3 logs, closed), check on those streams that
   the byte scan counts what `service.sse` parses, and read its RSS;
3. open the case's streams, settle, read RSS again (memory per idle stream) and the idle CPU;
4. unless the case is idle-only: `find_max` (the rate search), then the latency phase at a
   fixed moderate load, latency read on every stream, next to a plain Redis subscriber (the
   floor) on the one-room Redis cases;
5. read the system's counters, stop it, flush Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import secrets
import time
from dataclasses import dataclass

from service.auth import mint_token
from service.broker.keys import PLAIN

from ._common import NOISY, SECRET, Say, SetupError
from ._redis import PrivateRedis, RedisTap, flush_redis, pubsub_clients
from .metering import QuietCores, UsageMeter
from .publishers import LogFactory
from .reader import KeepingStream, Pool, Recorder, check_framing
from .records import Case, Latency, Run
from .stepping import LOST_NOTE, Rig, Rules, find_max
from .systems import System
from .verdicts import Cores

WARM_STREAMS = 10
WARM_LOGS = 3


@dataclass(frozen=True)
class Phases:
    """How the phases around the rate search run (both commands' flags of the same names)."""

    payload_bytes: int
    connect_concurrency: int
    connect_limit_s: float  # one connect attempt (of 3) at most
    sampled_streams: int  # streams read for latency in rate steps
    settle: float  # seconds after opening, before RSS
    latency_deliveries: float  # the latency phase's deliveries/s…
    latency_load: float  # …at most this share of the max sustained
    latency_seconds: float

    @classmethod
    def from_args(cls, args: argparse.Namespace, *, connect_limit_s: float) -> Phases:
        return cls(
            payload_bytes=args.payload_bytes,
            connect_concurrency=args.connect_concurrency,
            connect_limit_s=connect_limit_s,
            sampled_streams=args.sampled_streams,
            settle=args.settle,
            latency_deliveries=args.latency_deliveries,
            latency_load=args.latency_load,
            latency_seconds=args.latency_seconds,
        )


def new_run(system: System, case: Case, pinning: str) -> Run:
    """The empty record of `system` on `case`."""
    return Run(
        system=system.key,
        label=system.label,
        case=case.name,
        rooms=case.rooms,
        per_room=case.per_room,
        streams=case.streams,
        workers=case.workers,
        pinning=pinning,
        stream_query=system.query,
    )


async def measure_case(
    system: System,
    case: Case,
    run: Run,
    *,
    redis: PrivateRedis,
    phases: Phases,
    rules: Rules,
    cores: Cores,
    quiet: QuietCores,
    start_rate: float,
    say: Say,
) -> Run:
    """Measure `system` on `case` into `run`; a setup failure ends up in `run.error`."""
    say(f"\n== {case.title}: {system.label} (log {system.log_path})")
    busy = await quiet.wait(say)
    if busy >= NOISY / 2:
        run.notes.append(f"machine not quiet at start: a core {busy:.0%} busy")
    system.start()
    try:
        await system.wait_ready()
        await _measure(system, case, run, redis, phases, rules, cores, quiet, start_rate, say)
        run.counters = await system.counters()
    except SetupError as exc:
        run.error = str(exc)
        run.limit = "setup failed"
        say(f"  {system.key}: {exc}")
    finally:
        left = system.stop()
        if left:
            note = f"{len(left)} of its processes outlived its stop and were killed: {left}"
            run.notes.append(note)
            say(f"  {system.key}: {note}")
        with contextlib.suppress(Exception):
            await flush_redis(redis.url)
    return run


async def _measure(
    system: System,
    case: Case,
    run: Run,
    redis: PrivateRedis,
    phases: Phases,
    rules: Rules,
    cores: Cores,
    quiet: QuietCores,
    start_rate: float,
    say: Say,
) -> None:
    tag = secrets.token_hex(3)
    rooms = [f"bench-{case.name}-{tag}-{i}" for i in range(case.rooms)]
    warm_room = f"bench-warm-{tag}"
    token = mint_token(SECRET, rooms=["*"], ttl=6 * 3600, sub="bench")
    recorder = Recorder()
    feed = system.feed([*rooms, warm_room])
    logs = LogFactory(phases.payload_bytes)

    def request(room: str) -> bytes:
        return system.request(room, token)

    async def opened(pool: Pool, count: int, sampled: int, keep: bool = False) -> None:
        await pool.open(
            count,
            concurrency=phases.connect_concurrency,
            sampled=sampled,
            limit_s=phases.connect_limit_s,
            keep=keep,
        )

    try:
        # Warm-up: the code paths of a stream and of a delivery run once before RSS is read.
        warm = Pool(system.port, [warm_room], request, system.framing, recorder)
        await opened(warm, WARM_STREAMS, 0, keep=True)
        warm.rebase()
        for _ in range(WARM_LOGS):
            await feed.send([(len(rooms), logs.batch(1)[0])])
        await warm.wait_all([WARM_LOGS], time.monotonic() + 5)
        for stream in warm.streams:
            assert isinstance(stream, KeepingStream)
            check_framing(stream, system.key)
        await warm.close()
        await asyncio.sleep(0.5)
        run.rss_before_kib = system.rss_kib()

        pool = Pool(system.port, rooms, request, system.framing, recorder)
        t0 = time.monotonic()
        await opened(pool, case.per_room, phases.sampled_streams)
        run.connect_s = time.monotonic() - t0
        # The streams live for the whole case: keep the load generator's cyclic GC off them.
        gc.collect()
        gc.freeze()
        await asyncio.sleep(phases.settle)
        meter = UsageMeter(system.cpu_seconds, redis.pid, system.worker_pids())
        meter.start()
        await asyncio.sleep(1.0)
        idle = meter.stop()
        run.idle_server_core = idle.server
        run.rss_after_kib = system.rss_kib()
        run.rss_per_stream_kib = (run.rss_after_kib - run.rss_before_kib) / case.streams
        if system.uses_redis:
            run.redis_subscriptions = await pubsub_clients(redis.url)
        if system.workers > 1:
            run.worker_streams = system.worker_streams()
            say(f"  streams per worker (SO_REUSEPORT): {run.worker_streams}")
            if sum(run.worker_streams) != case.streams:
                run.notes.append(
                    f"the workers hold {sum(run.worker_streams):,} connections, "
                    f"not {case.streams:,}"
                )
        say(
            f"  opened {case.streams:,} streams in {run.connect_s:.2f}s; server RSS "
            f"{run.rss_before_kib / 1024:.1f} -> {run.rss_after_kib / 1024:.1f} MiB "
            f"({run.rss_per_stream_kib:.1f} KiB/stream), idle CPU {idle.server:.1%}, "
            f"Redis subscriptions {run.redis_subscriptions}"
        )
        if case.idle:
            await pool.close()
            return

        rig = Rig(pool, recorder, feed, logs, meter, rules, cores)

        async def wait_quiet() -> None:
            await quiet.wait(say)

        await find_max(rig, run, start_rate, rules, say, wait_quiet)

        best = run.max_sustained
        if best is not None and LOST_NOTE not in run.notes:
            deliveries = min(phases.latency_deliveries, phases.latency_load * best.achieved)
            rate = deliveries / case.per_room
            await quiet.wait(say)
            run.latency_rate_logs = rate
            tap = None
            if system.uses_redis and case.rooms == 1:
                tap = await RedisTap.open(redis.port, PLAIN.channel(rooms[0]), recorder)
            try:
                step = await rig.step(rate, phases.latency_seconds, latency_all=True)
            finally:
                if tap is not None:
                    tap.close()
            run.latency_step = step
            if tap is not None and tap.latencies:
                run.redis_floor = Latency.of(tap.latencies)
            floor = run.redis_floor
            say(
                "  latency:"
                + step.line()
                + (f" (plain Redis subscriber: p50 {floor.p50_ms:.2f} ms)" if floor else "")
            )
            if not step.sustained:
                run.notes.append("the latency phase was not sustained")
        await pool.close()
    finally:
        gc.unfreeze()
        await feed.close()
