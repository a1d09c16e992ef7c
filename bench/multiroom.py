"""Multi-room streams against one-room streams: the gateway's CPU per delivery, in one run.

    .venv/bin/python -m bench.multiroom            # cases A and B, ~4 min
    .venv/bin/python -m bench.multiroom --quick    # shorter, B's one-room side at 1,000: ~2 min

Two cases, each measured on two sides that get the same deliveries per second:

- **A**: one `GET /api/v1/logs?rooms=` stream on 64 rooms, against 64 one-room streams
  (`GET /api/v1/rooms/{room}/logs`, one per room). Each log is one delivery on either side.
- **B**: 1,000 multi-room streams, each on its own random 10 of 100 rooms (about 100 streams a
  room), against one-room streams with as many deliveries per log: 100 per room (10,000
  streams), or with `--b-per-room 10` 10 per room (1,000 streams) at 10x the logs/s.

Each side gets a fresh gateway (`python -m service serve` on core 0, as `bench.compare` starts
roomlogs; the load generator and the private redis-server on core 1), a warm-up (a one-room and
a multi-room stream read by `service.sse` as the byte scan counts them, each multi-room log with
its `roomId` first) and its streams, on rooms of its own. Both gateways of a case stay up, and
their `--rounds` phases alternate (multi, one, one, multi, ...), so that other load on the
machine weighs on both sides alike. A phase is one `stepping.Rig.step` of `--seconds` at the
case's fixed rate, logs round-robin over the side's rooms through the service's publish script
(`ScriptFeed`), latency read on every stream. Every stream must get exactly the logs of its
rooms, and none be closed, else that case fails as a setup error (exit 1).

The gateway's CPU per delivery is utime+stime from /proc over the phases ÷ deliveries; the
ratio multi-room / one-room of each case is the figure (issue 13's goal: at most 1.3x). Markdown
to stdout, progress to stderr, JSON to bench/results/multiroom-<UTC>.json. `--profile` adds one
py-spy phase per side, after the measured ones (not counted: sampling slows the gateway).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from service.auth import mint_token
from service.sse import Event

from ._common import HOST, RESULTS_DIR, SECRET, SetupError, fmt, say, shown
from ._procs import pin_load_generator, raise_nofile
from ._redis import PrivateRedis, flush_redis
from .metering import QuietCores, UsageMeter
from .profile import _py_spy, summarise
from .publishers import LogFactory, ScriptFeed, owed
from .reader import KeepingStream, Pool, Recorder, check_framing, events_of
from .records import Step
from .results import choose_source, record_of, step_of, utc_stamp, write_result
from .stepping import Rig, Rules
from .systems import Roomlogs
from .verdicts import Cores

GOAL: Final = 1.3  # issue 13: a multi-room delivery costs at most this many one-room ones
MULTI: Final = "multi-room"
ONE: Final = "one-room"
IDLE_S: Final = 2.0
WARM_LOGS: Final = 2  # per warm-up room
CONNECT_CONCURRENCY: Final = 100


# -- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """One side of a case: its streams over `rooms` rooms and the logs/s it is fed."""

    case: str  # A, B
    kind: str  # MULTI or ONE
    rooms: int
    rate_logs: float
    groups: tuple[tuple[int, ...], ...] | None = None  # multi-room: each stream's rooms
    per_room: int = 1  # one-room: streams on each room

    @property
    def streams(self) -> int:
        return len(self.groups) if self.groups is not None else self.rooms * self.per_room

    @property
    def rooms_per_stream(self) -> float:
        if self.groups is None:
            return 1
        return sum(map(len, self.groups)) / len(self.groups)

    @property
    def deliveries_per_log(self) -> float:
        if self.groups is None:
            return self.per_room
        return sum(map(len, self.groups)) / self.rooms

    @property
    def deliveries_per_s(self) -> float:
        return self.rate_logs * self.deliveries_per_log


@dataclass(frozen=True)
class Pair:
    """A case: the multi-room side and the one-room side with the same deliveries/s."""

    name: str
    title: str
    multi: Side
    one: Side
    note: str = ""


def random_groups(rooms: int, streams: int, size: int, seed: int) -> tuple[tuple[int, ...], ...]:
    """`streams` different sets of `size` rooms out of `rooms`, each sorted, drawn with `seed`
    (so a run can be repeated with the same layout)."""
    if size > rooms or streams > math.comb(rooms, size):
        raise ValueError(f"cannot draw {streams} different sets of {size} of {rooms} rooms")
    rng = random.Random(seed)
    seen: set[tuple[int, ...]] = set()
    out: list[tuple[int, ...]] = []
    while len(out) < streams:
        group = tuple(sorted(rng.sample(range(rooms), size)))
        if group not in seen:
            seen.add(group)
            out.append(group)
    return tuple(out)


def coverage(groups: Sequence[Sequence[int]], rooms: int) -> list[int]:
    """The streams on each room."""
    counts = [0] * rooms
    for group in groups:
        for room in group:
            counts[room] += 1
    return counts


def one_room_note(per_room: int, multi: Side) -> str:
    """Why case B's one-room side has the layout it has."""
    if per_room >= multi.deliveries_per_log:
        return (
            f"B's one-room side: {per_room} streams per room ({per_room * multi.rooms:,} "
            "streams), the same deliveries per log as the multi-room side, so the per-message "
            "work (Redis read, decode, dispatch) is spread over as many deliveries on both sides."
        )
    factor = multi.deliveries_per_log / per_room
    return (
        f"B's one-room side: {per_room} streams per room ({per_room * multi.rooms:,} streams) "
        f"at {factor:g}x the logs/s, so deliveries/s match (opening 10,000 streams takes too "
        "long for this mode). Each log's per-message work is then spread over "
        f"{per_room} deliveries instead of ~{multi.deliveries_per_log:.0f}: the one-room cost "
        "per delivery is inflated, and the ratio flattered."
    )


def plan(args: argparse.Namespace) -> list[Pair]:
    pairs: list[Pair] = []
    if "A" in args.cases:
        rooms = args.a_rooms
        multi = Side("A", MULTI, rooms, args.a_rate, groups=(tuple(range(rooms)),))
        one = Side("A", ONE, rooms, args.a_rate, per_room=1)
        pairs.append(
            Pair("A", f"1 stream on {rooms} rooms vs {rooms} one-room streams", multi, one)
        )
    if "B" in args.cases:
        rooms, streams, size = args.b_rooms, args.b_streams, args.b_size
        groups = random_groups(rooms, streams, size, args.seed)
        multi = Side("B", MULTI, rooms, args.b_rate, groups=groups)
        rate = multi.deliveries_per_s / args.b_per_room
        one = Side("B", ONE, rooms, rate, per_room=args.b_per_room)
        title = f"{streams:,} streams on {size} of {rooms} rooms vs {one.streams:,} one-room"
        counts = coverage(groups, rooms)
        spread = f" The multi-room side has {min(counts)} to {max(counts)} streams on a room."
        pairs.append(Pair("B", title, multi, one, one_room_note(args.b_per_room, multi) + spread))
    return pairs


# -- the checks -------------------------------------------------------------------------------


def count_problem(got_owed: Sequence[tuple[int, int]], closed: Sequence[str | None]) -> str | None:
    """What is wrong with a phase's deliveries (per stream: logs received, logs owed; the
    errors of the streams that were closed), or None when every stream got exactly what it
    was owed and none was closed."""
    if closed:
        return f"{len(closed)} streams were closed ({closed[0]})"
    short = [(g, o) for g, o in got_owed if g < o]
    extra = [(g, o) for g, o in got_owed if g > o]
    if short:
        g, o = short[0]
        return f"{len(short)} of {len(got_owed)} streams missed logs (one got {g} of {o})"
    if extra:
        g, o = extra[0]
        return f"{len(extra)} of {len(got_owed)} streams got more logs than sent ({g} of {o})"
    return None


def tagged_problem(events: Sequence[Event], rooms: Sequence[str], each: int) -> str | None:
    """What is wrong with a multi-room stream's warm-up logs: each must name its room first
    (`{"roomId":...`), carry a cursor `id:`, and every room have sent `each` logs."""
    seen = dict.fromkeys(rooms, 0)
    for e in events:
        if e.event != "log":
            continue
        room = e.json().get("roomId")
        if not e.data.startswith('{"roomId":') or room not in seen:
            return f"a log without its room first: {e.data[:80]!r}"
        if not (e.id or "").startswith("r1."):
            return f"a log whose id is not a cursor: {e.id!r}"
        seen[room] += 1
    wrong = {r: n for r, n in seen.items() if n != each}
    return f"logs per room {wrong}, {each} expected" if wrong else None


def rooms_request(port: int, rooms: str, token: str) -> bytes:
    """The multi-room GET, as `System.request` asks for one room; `rooms` comma-joined (a
    room id never holds a comma)."""
    return (
        f"GET /api/v1/logs?rooms={rooms} HTTP/1.1\r\n"
        f"Host: {HOST}:{port}\r\n"
        f"Authorization: Bearer {token}\r\n"
        "Accept: text/event-stream\r\n"
        "Cache-Control: no-cache\r\n"
        "\r\n"
    ).encode("ascii")


# -- the measurement ----------------------------------------------------------------------------


@dataclass
class Measured:
    """One side as measured: its phases and what they add up to."""

    case: str
    kind: str
    streams: int
    rooms: int
    rooms_per_stream: float
    rate_logs: float
    deliveries_per_log: float
    connect_s: float = math.nan
    idle_server_core: float = math.nan
    steps: list[Step] = field(default_factory=list)
    profile: str = ""  # the py-spy summary (--profile)
    profile_step: Step | None = None  # the phase py-spy sampled (not in `steps`)
    error: str | None = None

    @classmethod
    def of(cls, side: Side) -> Measured:
        return cls(side.case, side.kind, side.streams, side.rooms, side.rooms_per_stream,
                   side.rate_logs, side.deliveries_per_log)  # fmt: skip

    @property
    def delivered(self) -> int:
        return sum(s.delivered for s in self.steps)

    @property
    def us_per_delivery(self) -> float:
        """Over all its phases: their CPU ÷ their deliveries."""
        cpu = sum(s.server_cpu_us_per_delivery * s.delivered for s in self.steps)
        return cpu / self.delivered if self.delivered else math.nan

    @property
    def deliveries_per_s(self) -> float:
        return statistics.fmean(s.achieved for s in self.steps) if self.steps else math.nan

    @property
    def server_core(self) -> float:
        return statistics.fmean(s.server_core for s in self.steps) if self.steps else math.nan

    @property
    def logs_per_read(self) -> float:
        reads = sum(s.reads_per_delivery * s.delivered for s in self.steps)
        return self.delivered / reads if reads else math.nan

    @property
    def p50_ms(self) -> float:
        values = [s.latency.p50_ms for s in self.steps if s.latency]
        return statistics.median(values) if values else math.nan

    @property
    def p99_ms(self) -> float:
        return max((s.latency.p99_ms for s in self.steps if s.latency), default=math.nan)

    @property
    def other_load(self) -> float:
        return max((max(s.other_server_core, s.other_client_core) for s in self.steps), default=0)


def ratio(multi: Measured, one: Measured) -> float:
    if multi.error or one.error or not one.us_per_delivery:
        return math.nan
    return multi.us_per_delivery / one.us_per_delivery


@dataclass
class Live:
    """A side while its gateway runs: the gateway, its streams, its feed and rig."""

    side: Side
    out: Measured = field(init=False)
    gateway: Roomlogs | None = None
    pool: Pool | None = None
    feed: ScriptFeed | None = None
    rig: Rig | None = None
    current: bool = False  # being started or measured (what a SetupError is about)

    def __post_init__(self) -> None:
        self.out = Measured.of(self.side)


class Bench:
    """One private Redis; per case, a fresh gateway for each side, both up."""

    def __init__(self, args: argparse.Namespace, redis: PrivateRedis, quiet: QuietCores) -> None:
        self.args = args
        self.redis = redis
        self.quiet = quiet
        self.token = mint_token(SECRET, rooms=["*"], ttl=6 * 3600, sub="bench")
        self.cores = Cores(None if args.server_cpu is None else [args.server_cpu], args.client_cpu)
        self.rules = Rules(args.seconds, 2.0, 0.12, 1, args.max_p99_ms, stop_at_client_limit=False)
        self.tag = utc_stamp().lower()

    def pool(self, gateway: Roomlogs, rooms: Sequence[str], recorder: Recorder,
             groups: Sequence[Sequence[int]] | None = None) -> Pool:  # fmt: skip
        """One-room streams on `rooms`, or (`groups`) multi-room streams on those sets."""
        if groups is None:
            return Pool(gateway.port, rooms, lambda r: gateway.request(r, self.token),
                        gateway.framing, recorder)  # fmt: skip
        return Pool(gateway.port, rooms, lambda r: rooms_request(gateway.port, r, self.token),
                    gateway.framing, recorder, groups=groups)  # fmt: skip

    async def case(self, pair: Pair) -> tuple[Measured, Measured]:
        """Both sides' gateways up at once, their phases interleaved (multi, one, one, multi,
        ...), so that whatever else loads the machine weighs on both alike."""
        sides = [Live(pair.multi), Live(pair.one)]
        try:
            for live in sides:
                await self.start(live)
            for live in sides:
                live.out.idle_server_core = await self.idle(live)
            for round_ in range(self.args.rounds):
                for live in sides if round_ % 2 == 0 else sides[::-1]:
                    await self.quiet.wait(say)
                    say(f"  {live.side.kind}, phase {round_ + 1}:")
                    live.out.steps.append(await self.phase(live))
            if self.args.profile:
                for live in sides:
                    await self.profiled(live)
        except SetupError as exc:
            failed = next((x for x in sides if x.current), sides[0])
            failed.out.error = str(exc)
            proc = failed.gateway.proc if failed.gateway else None
            if proc is not None and proc.poll() is not None:
                failed.out.error += f" (the gateway had exited: {proc.returncode})"
            say(f"  case {pair.name} {failed.side.kind} failed: {failed.out.error}")
        finally:
            for live in sides:
                await self.stop(live)
            await flush_redis(self.redis.url)
        return sides[0].out, sides[1].out

    async def start(self, live: Live) -> None:
        """The side's gateway, warmed up, and its streams open."""
        args, side = self.args, live.side
        live.current = True
        cpus = None if args.server_cpu is None else str(args.server_cpu)
        gateway = live.gateway = Roomlogs(self.redis.url, args.workdir, cpus, side.streams + 10,
                                          source=args.source)  # fmt: skip
        rooms = [f"mr-{self.tag}-{side.case}-{side.kind[0]}-{i}" for i in range(side.rooms)]
        say(f"\n== case {side.case}, {side.kind}: {side.streams:,} streams, "
            f"{side.rate_logs:,.0f} logs/s ({side.deliveries_per_s:,.0f} deliveries/s); "
            f"log {gateway.log_path}")  # fmt: skip
        await self.quiet.wait(say)
        recorder = Recorder()
        pool = live.pool = self.pool(gateway, rooms, recorder, side.groups)
        live.feed = ScriptFeed(self.redis.url, rooms)
        gateway.start()
        await gateway.wait_ready()
        await self.warm_up(gateway, side)
        t0 = time.monotonic()
        await pool.open(side.per_room, concurrency=CONNECT_CONCURRENCY, sampled=0)
        live.out.connect_s = time.monotonic() - t0
        say(f"  {len(pool):,} streams open in {live.out.connect_s:.1f} s")
        meter = UsageMeter(gateway.cpu_seconds, self.redis.pid)
        live.rig = Rig(pool, recorder, live.feed, LogFactory(args.payload_bytes), meter,
                       self.rules, self.cores)  # fmt: skip
        live.current = False

    async def idle(self, live: Live) -> float:
        """The gateway's CPU with its streams open and no logs (both gateways up)."""
        assert live.rig is not None
        meter = live.rig.meter
        meter.start()
        await asyncio.sleep(IDLE_S)
        return meter.stop().server

    async def stop(self, live: Live) -> None:
        if live.feed is not None:
            await live.feed.close()
        if live.pool is not None:
            await live.pool.close()
        if live.gateway is not None and (left := live.gateway.stop()):
            say(f"  gateway processes outlived their stop and were killed: {left}")

    async def phase(self, live: Live) -> Step:
        """One `Rig.step` at the side's rate; every stream must have exactly its logs."""
        assert live.rig is not None
        assert live.pool is not None
        live.current = True
        side, pool = live.side, live.pool
        step = await live.rig.step(side.rate_logs, self.args.seconds, latency_all=True)
        await asyncio.sleep(0.2)  # a duplicate would arrive about now
        need = pool.owed_to_groups(owed(step.sent, side.rooms))
        problem = count_problem([(s.received - s.base, need[s.room]) for s in pool.streams],
                                [s.error for s in pool.dead()])  # fmt: skip
        say(step.line() + f" logs/read {1 / max(step.reads_per_delivery, 1e-9):.1f}")
        if problem is not None:
            raise SetupError(f"not every stream got every log: {problem}")
        live.current = False
        return step

    async def profiled(self, live: Live) -> None:
        """One more phase with py-spy sampling the gateway; its hot functions."""
        spy = _py_spy()
        side, gateway = live.side, live.gateway
        assert spy is not None, "checked in main()"
        assert gateway is not None
        assert gateway.proc is not None
        name = f"{self.args.out.stem}-profile-{side.case}-{side.kind}.txt"
        path = self.args.out.with_name(name)
        seconds = max(2, int(self.args.seconds))
        argv = [
            spy, "record", "--pid", str(gateway.proc.pid), "--rate", "250",
            "--duration", str(seconds), "--format", "raw", "--output", str(path),
        ]  # fmt: skip
        if self.args.native:
            argv.append("--native")
        if self.args.client_cpu is not None:
            argv = ["taskset", "-c", str(self.args.client_cpu), *argv]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        await asyncio.sleep(0.5)
        say(f"  {side.kind}, profiled by py-spy (not counted):")
        live.out.profile_step = await self.phase(live)
        async with asyncio.timeout(seconds + 60):
            _, err = await proc.communicate()
        if not path.exists():
            live.out.profile = f"py-spy failed: {err.decode(errors='replace')[-500:]}"
            return
        say(f"  collapsed stacks: {shown(path)}")
        live.out.profile = summarise(path, 20)

    async def warm_up(self, gateway: Roomlogs, side: Side) -> None:
        """Both stream kinds run, and their bytes read as the scan counts them."""
        rooms = [f"mrw-{self.tag}-{side.case}-{side.kind[0]}-{i}" for i in range(2)]
        one = self.pool(gateway, rooms[:1], Recorder())
        multi = self.pool(gateway, rooms, Recorder(), groups=[(0, 1)])
        await one.open(1, concurrency=1, sampled=0, keep=True)
        await multi.open(1, concurrency=1, sampled=0, keep=True)
        feed = ScriptFeed(self.redis.url, rooms)
        logs = LogFactory(self.args.payload_bytes)
        try:
            await feed.send([(i % 2, log) for i, log in enumerate(logs.batch(2 * WARM_LOGS))])
            deadline = time.monotonic() + 5
            for pool in (one, multi):
                if left := await pool.wait_all([WARM_LOGS, WARM_LOGS], deadline):
                    raise SetupError(f"warm-up: a stream missed logs ({left[0].error})")
            for stream in (*one.streams, *multi.streams):
                assert isinstance(stream, KeepingStream)
                check_framing(stream, "roomlogs")
            (stream,) = multi.streams
            assert isinstance(stream, KeepingStream)
            if problem := tagged_problem(events_of(bytes(stream.raw)), rooms, WARM_LOGS):
                raise SetupError(f"warm-up, multi-room stream: {problem}")
        finally:
            await feed.close()
            await one.close()
            await multi.close()


# -- the report -------------------------------------------------------------------------------


def _us(m: Measured) -> str:
    each = "/".join(fmt(s.server_cpu_us_per_delivery, ".1f") for s in m.steps)
    return (
        f"**{fmt(m.us_per_delivery, '.1f')}** ({each})"
        if len(m.steps) > 1
        else fmt(m.us_per_delivery, ".1f")
    )


class Titled(Protocol):
    """What the report reads of a case: a `Pair` as run, or a `Recorded` one read back."""

    @property
    def name(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def note(self) -> str: ...


@dataclass(frozen=True)
class Recorded:
    """A case as its result JSON (or a journal entry) has it, without its room layout."""

    name: str
    title: str
    note: str = ""


def markdown(pairs: Sequence[Titled], measured: Sequence[tuple[Measured, Measured]],
             args: argparse.Namespace) -> str:  # fmt: skip
    lines = [
        f"### Multi-room against one-room streams ({args.seconds:g} s x {args.rounds} phases "
        "per side)",
        "",
        "| case | side | streams | rooms / stream | logs/s | deliveries/s | server µs / "
        "delivery (per phase) | server core | idle core | logs / read | p50 ms | p99 ms | "
        "every log |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for pair, sides in zip(pairs, measured, strict=True):
        for m in sides:
            ok = "error: " + m.error if m.error else f"yes ({m.delivered:,})"
            lines.append(
                f"| {pair.name} | {m.kind} | {m.streams:,} | {m.rooms_per_stream:g} | "
                f"{m.rate_logs:,.0f} | {fmt(m.deliveries_per_s, ',.0f')} | {_us(m)} | "
                f"{fmt(m.server_core, '.0%')} | {fmt(m.idle_server_core, '.1%')} | "
                f"{fmt(m.logs_per_read, '.1f')} | {fmt(m.p50_ms, '.1f')} | "
                f"{fmt(m.p99_ms, '.1f')} | {ok} |"
            )
    lines += [
        "",
        f"| case | what | multi-room µs / delivery | one-room µs / delivery | multi / one-room "
        f"| goal ≤ {GOAL:g}x |",
        "|---|---|---:|---:|---:|---|",
    ]
    for pair, (multi, one) in zip(pairs, measured, strict=True):
        r = ratio(multi, one)
        verdict = "n/a" if math.isnan(r) else ("met" if r <= GOAL else "**not met**")
        times = "" if math.isnan(r) else "x"
        lines.append(
            f"| {pair.name} | {pair.title} | {fmt(multi.us_per_delivery, '.1f')} | "
            f"{fmt(one.us_per_delivery, '.1f')} | {fmt(r, '.2f')}{times} | {verdict} |"
        )
    notes = [p.note for p in pairs if p.note]
    noisy = [f"{m.case} {m.kind} {m.other_load:.0%}" for s in measured for m in s
             if m.other_load >= 0.15]  # fmt: skip
    if noisy:
        notes.append("Other processes loaded a core during phases (most of a core): "
                     + ", ".join(noisy) + ".")  # fmt: skip
    notes.append(
        "Server µs / delivery: the gateway's utime+stime (/proc) over the phases ÷ deliveries, "
        "bold over all phases, then each. p50 is the median of the phases', p99 the worst."
    )
    lines += ["", *(f"- {n}" for n in notes)]
    for sides in measured:
        for m in sides:
            if m.profile:
                at = m.profile_step
                cost = (
                    f", {at.server_cpu_us_per_delivery:.1f} µs / delivery while sampled"
                    if at
                    else ""
                )
                lines += ["", f"#### py-spy, case {m.case} {m.kind} (gateway{cost})", "", m.profile]
    return "\n".join(lines)


def measured_of(raw: dict[str, Any]) -> Measured:
    m = record_of(Measured, raw)
    m.steps = [s for s in map(step_of, raw.get("steps", [])) if s is not None]
    m.profile_step = step_of(raw.get("profile_step"))
    return m


def report_of(doc: dict[str, Any]) -> str:
    """The Markdown of a result JSON (or a journal entry), as the run printed it."""
    heads, measured = [], []
    for case in doc.get("cases", []):
        heads.append(Recorded(case["case"], case["title"], case.get("note", "")))
        multi, one = (measured_of(side) for side in case["sides"])
        measured.append((multi, one))
    config = doc.get("config", {})
    args = argparse.Namespace(seconds=config.get("seconds", math.nan), rounds=config.get("rounds"))
    return markdown(heads, measured, args)


# -- the command ------------------------------------------------------------------------------


def parse_cases(raw: str) -> list[str]:
    cases = [c.strip().upper() for c in raw.split(",") if c.strip()]
    if not cases or any(c not in ("A", "B") for c in cases):
        raise argparse.ArgumentTypeError("cases are A and/or B")
    return cases


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.multiroom", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    p.add_argument("--quick", action="store_true",
                   help="3 s x 2 phases, case B's one-room side 10 per room (~2 min)")  # fmt: skip
    p.add_argument("--cases", type=parse_cases, default=["A", "B"], help="A,B")
    p.add_argument("--a-rooms", type=int, default=64, help="case A: rooms of the one stream")
    p.add_argument("--a-rate", type=float, default=3000, help="case A: logs/s")
    p.add_argument("--b-rooms", type=int, default=100, help="case B: rooms")
    p.add_argument("--b-streams", type=int, default=1000, help="case B: multi-room streams")
    p.add_argument("--b-size", type=int, default=10, help="case B: rooms of each stream")
    p.add_argument("--b-rate", type=float, default=200, help="case B: logs/s, multi-room side")
    p.add_argument("--b-per-room", type=int, default=None,
                   help="case B: one-room streams per room (100; 10 with --quick), the "
                   "logs/s scaled to the same deliveries/s")  # fmt: skip
    p.add_argument("--seconds", type=float, default=None, help="one phase (6; 3 with --quick)")
    p.add_argument("--rounds", type=int, default=None, help="phases per side (3; 2 with --quick)")
    p.add_argument("--seed", type=int, default=13, help="case B's random room sets")
    p.add_argument("--payload-bytes", type=int, default=256, help="size of one log's JSON")
    p.add_argument("--max-p99-ms", type=float, default=500, help="a phase's p99 at most (noted)")
    p.add_argument("--profile", action="store_true", help="one more phase per side, under py-spy")
    p.add_argument("--native", action="store_true", help="--profile with C frames (py-spy)")
    p.add_argument("--server-cpu", type=int, default=0, help="core for the gateway")
    p.add_argument("--client-cpu", type=int, default=1, help="core for load generator + redis")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    p.add_argument("--quiet-wait", type=float, default=15, help="wait up to this for idle cores")
    p.add_argument("--quiet-budget", type=float, default=60, help="total quiet waiting at most")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/)")
    p.add_argument("--rev", default=None, help="run the gateway from this git revision")
    args = p.parse_args(argv)
    args.seconds = args.seconds or (3.0 if args.quick else 6.0)
    args.rounds = args.rounds or (2 if args.quick else 3)
    args.b_per_room = args.b_per_room or (10 if args.quick else 100)
    args.profile = args.profile or args.native
    if min(args.a_rooms, args.b_rooms, args.b_streams, args.b_size, args.b_per_room) < 1:
        p.error("room and stream counts must be positive")
    if args.a_rate <= 0 or args.b_rate <= 0 or args.seconds <= 0:
        p.error("rates and --seconds must be positive")
    if args.no_pin:
        args.server_cpu = args.client_cpu = None
    args.started = utc_stamp()
    args.rev_commit = None
    return args


def pinning(args: argparse.Namespace) -> str:
    if args.server_cpu is None:
        return "unpinned"
    return f"gateway on core {args.server_cpu}, load generator and redis on {args.client_cpu}"


async def amain(args: argparse.Namespace) -> int:
    args.out = args.out or RESULTS_DIR / f"multiroom-{args.started}.json"
    args.workdir = args.out.with_name(args.out.stem + "-logs")  # the gateways' output
    args.workdir.mkdir(parents=True, exist_ok=True)
    cores = [c for c in (args.server_cpu, args.client_cpu) if c is not None]
    quiet = QuietCores(cores, args.quiet_wait, args.quiet_budget)
    redis = PrivateRedis(args.client_cpu, extra=["--client-output-buffer-limit", "pubsub 0 0 0"])
    pairs = plan(args)
    measured: list[tuple[Measured, Measured]] = []
    started = time.monotonic()

    def write() -> None:
        write_result(args.out, "multiroom", args, [], pinning=pinning(args),
                     cases=[{"case": p.name, "title": p.title, "note": p.note,
                             "ratio": ratio(*m), "sides": [asdict(x) for x in m]}
                            for p, m in zip(pairs, measured, strict=False)])  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="roomlogs-multiroom-") as tmp:
        try:
            choose_source(args, Path(tmp), "gateway")
            redis.start()
            bench = Bench(args, redis, quiet)
            for pair in pairs:
                measured.append(await bench.case(pair))
                write()  # what is done so far survives a crash
        except SetupError as exc:
            say(f"setup failed: {exc}")
            write()
            return 1
        finally:
            redis.stop()
    print(markdown(pairs, measured, args))
    print(f"\nJSON: {shown(args.out)}")
    say(f"took {(time.monotonic() - started) / 60:.1f} min")
    return 1 if any(m.error for sides in measured for m in sides) else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    problem = pin_load_generator(args.server_cpu, args.client_cpu)
    if problem is not None:
        say(f"setup failed: {problem}")
        return 1
    if (args.profile or args.native) and _py_spy() is None:
        say("py-spy not found: .venv/bin/pip install py-spy")
        return 1
    # Each process (this one, the gateway) holds one descriptor per stream, plus its own.
    needed = max(args.b_streams, args.b_rooms * args.b_per_room, args.a_rooms) + 2048
    if raise_nofile(needed) < needed:
        say(f"setup failed: an open file limit of {needed} is needed (ulimit -n)")
        return 1
    import uvloop

    return uvloop.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
