"""The rate search both commands use: one rate step, and the stepping and bisection to the
maximum sustained rate (what limited it is `verdicts.bottleneck`).

A step publishes at a fixed rate for `step_seconds`, then waits for every stream to have every
log of its room. It is **sustained** when every stream got every log, none was closed, the last
log arrived within 10 % of the step + 0.2 s of its send (the backlog did not grow by more than
that), and the p99 latency on the sampled streams stayed within `max_p99_ms`.

`find_max` multiplies the offered deliveries/s by `growth` until a step fails, then bisects
between the best sustained and the lowest failed rate until they are within `resolution`, in at
most `max_steps` steps; when the first step fails it divides instead, down to a couple of logs
per step. A failed step during which other processes loaded a core is run once more, after
waiting for quiet cores. A step that lost logs or closed streams ends the search.
"""

from __future__ import annotations

import argparse
import math
import time
from array import array
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from ._common import Say
from .metering import UsageMeter
from .publishers import Feed, LogFactory, owed, publish_at
from .reader import Pool, Recorder
from .records import Latency, Run, Step
from .verdicts import Cores, bottleneck

LOST_NOTE = "streams lost logs or were closed: stepping stopped"


@dataclass(frozen=True)
class Rules:
    step_seconds: float
    growth: float
    resolution: float  # stop bisecting when best sustained and lowest failed are this close
    max_steps: int
    max_p99_ms: float
    # bench.fanout stops at the first sustained step that saturated the load generator's core
    # (a step beyond measures the client); bench.compare steps on, since the systems coalesce
    # differently and a cut there would rank them by what they cost the client.
    stop_at_client_limit: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace, *, stop_at_client_limit: bool) -> Rules:
        """From both commands' flags of the same names."""
        return cls(
            step_seconds=args.step_seconds,
            growth=args.growth,
            resolution=args.resolution,
            max_steps=args.max_steps,
            max_p99_ms=args.max_p99_ms,
            stop_at_client_limit=stop_at_client_limit,
        )


class Stepper(Protocol):
    """What `find_max` drives: `Rig` on real streams, a fake in the tests."""

    cores: Cores

    @property
    def per_room(self) -> float: ...

    async def step(self, rate_logs: float, seconds: float) -> Step: ...

    def still_behind(self, step: Step) -> bool: ...


def first_rate(previous_max: float | None, default: float, floor: float = 0.0) -> float:
    """Where a search starts: half the maximum of the previous (smaller) case, else `default`."""
    return default if previous_max is None else max(floor, previous_max / 2)


async def find_max(
    stepper: Stepper,
    run: Run,
    start: float,
    rules: Rules,
    say: Say,
    quiet: Callable[[], Awaitable[object]],
) -> None:
    """Search the max sustained deliveries/s from `start`; the steps, the best, the first
    failure, the limit and the notes go into `run`."""
    per_room = stepper.per_room
    lo: float | None = None  # deliveries/s
    hi: float | None = None
    rate = start
    for _ in range(rules.max_steps):
        step = await stepper.step(rate / per_room, rules.step_seconds)
        say(step.line())
        if not step.sustained and step.complete and not step.dead_streams and step.noisy:
            run.steps.append(step)
            await quiet()
            step = await stepper.step(rate / per_room, rules.step_seconds)
            step.retried = True
            say(step.line() + " (retry: the first run was noisy)")
        run.steps.append(step)
        if step.sustained:
            lo = rate
            if run.max_sustained is None or step.achieved > run.max_sustained.achieved:
                run.max_sustained = step
            if "load generator" in (bottleneck(step, stepper.cores) or ""):
                if rules.stop_at_client_limit:
                    if hi is None:
                        run.notes.append(
                            "the load generator saturated its core before a step failed"
                        )
                        break
                else:
                    note = "the load generator's core was saturated in a sustained step"
                    if note not in run.notes:
                        run.notes.append(note)
        else:
            hi = rate
            if run.first_failure is None or rate < run.first_failure.offered:
                run.first_failure = step
            if step.dead_streams or (not step.complete and stepper.still_behind(step)):
                run.notes.append(LOST_NOTE)
                break
        if hi is None:
            rate *= rules.growth
        elif lo is None:
            rate /= rules.growth
            if rate / per_room * rules.step_seconds < 2:
                run.notes.append(
                    "not sustained even at a couple of logs per step: one log's fan-out alone "
                    "breaks the lag or p99 rule"
                )
                break
        else:
            if hi / lo < 1.0 + rules.resolution:
                break
            rate = math.sqrt(lo * hi)
    if run.max_sustained is None:
        run.limit = "nothing sustained"
    elif run.first_failure is None:
        saturated = bottleneck(run.max_sustained, stepper.cores)
        run.limit = f"{saturated} (no step failed)" if saturated else "not reached"
    else:
        run.limit = bottleneck(run.first_failure, stepper.cores) or "unclear: no core saturated"
    if any(s.noisy for s in run.steps):
        worst = max(max(s.other_server_core, s.other_client_core) for s in run.steps)
        run.notes.append(f"other processes used up to {worst:.0%} of a core during steps")


class Rig:
    """The real `Stepper`: a pool of streams, a feed, a meter; `step` is one rate step."""

    def __init__(
        self,
        pool: Pool,
        recorder: Recorder,
        feed: Feed,
        logs: LogFactory,
        meter: UsageMeter,
        rules: Rules,
        cores: Cores,
    ) -> None:
        self.pool = pool
        self.recorder = recorder
        self.feed = feed
        self.logs = logs
        self.meter = meter
        self.rules = rules
        self.cores = cores

    @property
    def per_room(self) -> float:
        return self.pool.per_room

    def still_behind(self, step: Step) -> bool:
        """Whether streams are still missing logs of `step` (after its drain)."""
        return bool(self.pool.behind(owed(step.sent, len(self.pool.rooms))))

    async def step(self, rate_logs: float, seconds: float, *, latency_all: bool = False) -> Step:
        """Publish `rate_logs` logs/s (round-robin over the rooms) for about `seconds`, then
        wait for every stream to have every log of its room. `latency_all`: read the latency
        on every stream, not only the sampled ones (the latency phase)."""
        pool, rec, cores = self.pool, self.recorder, self.cores
        rooms = len(pool.rooms)
        count = max(5, rooms, round(rate_logs * seconds))
        pool.rebase()
        total0, reads0 = rec.total, rec.reads
        rec.latencies = array("d")
        saved = [s.sampled for s in pool.streams]
        if latency_all:
            for s in pool.streams:
                s.sampled = True
        rec.recording = True
        self.meter.start()
        try:
            sent = await publish_at(
                self.feed, self.logs, rooms, rate_logs, count, time_limit=seconds * 3
            )
            span = max(sent.last_wall - sent.first_wall, 1e-3)
            lag_limit = 0.1 * span + 0.2
            # Long enough to tell "late" from "lost", short enough to bound a step.
            behind = await pool.wait_all(sent.per_room, time.monotonic() + max(2.0, 2 * lag_limit))
            usage = self.meter.stop()
        finally:
            rec.recording = False
            if latency_all:
                for s, was in zip(pool.streams, saved, strict=True):
                    s.sampled = was
        complete = not behind
        delivered = rec.total - total0
        done_wall = max((s.last_rx for s in pool.streams), default=sent.last_wall)
        lag = done_wall - sent.last_wall if complete else math.inf
        # The first log's deliveries open the interval, so they are not counted in it.
        span_rx = max(done_wall - sent.first_wall, 1e-3)
        achieved = delivered * (sent.sent - 1) / sent.sent / span_rx
        dead = len(pool.dead())
        need = pool.owed_to_groups(sent.per_room)  # per stream's room (or rooms)
        latency = Latency.of(rec.latencies) if rec.latencies else None
        p99_ok = latency is None or latency.p99_ms <= self.rules.max_p99_ms
        server = cores.server
        client_busy = usage.cores.get(cores.client, 0.0) if cores.client is not None else 0.0
        shared = bool(server) and cores.client in (server or ())
        if shared and server:
            # The server shares the client core: whatever the cores did beyond our processes.
            busy_all = sum(usage.cores.get(c, 0.0) for c in server)
            other_server = 0.0
            other_client = max(0.0, busy_all - usage.server - usage.client_side)
        else:
            server_busy = (
                max((usage.cores.get(c, 0.0) for c in server), default=0.0) if server else 0.0
            )
            own_on_server = usage.server / len(server) if server else usage.server
            other_server = max(0.0, server_busy - own_on_server)
            other_client = max(0.0, client_busy - usage.client_side)
        result = Step(
            rate_logs=rate_logs,
            offered=rate_logs * pool.per_room,
            sent=sent.sent,
            expected=sum(need[s.room] for s in pool.streams),
            delivered=delivered,
            achieved=achieved,
            lag_s=lag,
            lag_limit_s=lag_limit,
            complete=complete,
            sustained=complete and dead == 0 and lag <= lag_limit and p99_ok,
            server_cpu_us_per_delivery=usage.server_seconds * 1e6 / max(delivered, 1),
            publish_rate=(sent.sent - 1) / span,
            server_core=usage.server,
            loadgen_core=usage.loadgen,
            redis_core=usage.redis,
            cores=usage.cores,
            other_server_core=other_server,
            other_client_core=other_client,
            reads_per_delivery=(rec.reads - reads0) / max(delivered, 1),
            latency=latency,
            dead_streams=dead,
            workers=usage.workers,
        )
        rec.latencies = array("d")
        if not complete:
            # Let a backlog drain (bounded) so the next step starts clean.
            await pool.wait_all(sent.per_room, time.monotonic() + max(10.0, span * 3))
            result.delivered_after_drain = rec.total - total0
        return result
