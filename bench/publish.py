"""Publishing at the speed of the fan-out (issue 14): how fast logs get *in*, side by side.

    .venv/bin/python -m bench.publish            # ~4 minutes
    .venv/bin/python -m bench.publish --quick    # ~2 minutes

Every server runs pinned to core 0 (`taskset`), fresh, one after another; the load generator
(this process, uvloop) and the private redis-server share core 1, as in `bench.compare`. The
load generator is pipelined keep-alive connections with no HTTP client library: each
connection keeps `--depth` requests in flight (closed loop: every answer sends the next one),
answers are counted by their status lines, in order, so each one's latency is known.

- roomlogs: `GET /healthz` (the same server's floor: routing, middlewares, one JSON answer),
  `POST /api/v1/rooms/{room}/logs` with one log and an `Idempotency-Key` (a new key each),
  the same with 100 logs, then the single-log POST at half its max rate (open loop) for the
  publish latency; and the `service.publisher.Publisher` over HTTP;
- the minimal server (`bench/systems/minimal_server.py`): `GET /healthz`, the floor of one
  HTTP request in Python (it has no publish endpoint);
- nchan: `GET /healthz` (a fixed nginx answer), `POST /pub/{room}` with one log (its
  publisher location, as `bench.compare` feeds it), and that at half its max rate;
- Redis alone: a plain `PUBLISH`, and the service's publish script (`EVALSHA`, what one POST
  costs Redis), pipelined from the load generator;
- `service.publisher.Publisher` on Redis from this one process: `emit` and `emit_many`,
  one call at a time and several at once.

It prints Markdown tables, the ratios of issue 14 and whether each goal is met, and writes
bench/results/publish-<UTC timestamp>.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

from service.auth import mint_token
from service.broker.keys import PLAIN
from service.publisher import Publisher

from ._common import HOST, RESULTS_DIR, SECRET, SetupError, say, shown
from ._procs import pin_load_generator, proc_cpu_seconds
from ._redis import PrivateRedis, flush_redis
from .cases import systems_among
from .metering import QuietCores
from .pipes import HttpPipe, Load, Make, Options, RespPipe, Target, closed_loop, open_loop
from .profile import spying
from .publishers import LogFactory, NchanFeed, ScriptFeed, resp
from .report_publish import (
    BATCH,
    HEALTHZ,
    NCHAN_POST,
    POST_BATCH,
    POST_ONE,
    PUBLISH,
    SCRIPT,
    PublisherRun,
    Report,
    goals,
    markdown,
)
from .results import utc_stamp, write_result
from .systems import Minimal, Nchan, Roomlogs, System, without_missing_nchan

# -- the requests -------------------------------------------------------------------------------


def get_maker(port: int, path: str) -> Make:
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    return lambda: request


def roomlogs_post_maker(port: int, rooms: Sequence[str], bodies: Sequence[bytes]) -> Make:
    """`POST /api/v1/rooms/{room}/logs`, a new `Idempotency-Key` each, rooms and bodies in
    turn (pre-built: the load generator's cost per request stays small)."""
    token = mint_token(SECRET, rooms=["*"], publish=["*"], ttl=6 * 3600, sub="bench")
    heads = [
        (
            f"POST /api/v1/rooms/{room}/logs HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            "Idempotency-Key: "
        ).encode()
        for room in rooms
    ]
    prefix = secrets.token_hex(6).encode()
    counter = itertools.count()

    def make() -> bytes:
        n = next(counter)
        body = bodies[n % len(bodies)]
        head = heads[n % len(heads)]
        return b"%b%b-%d\r\nContent-Length: %d\r\n\r\n%b" % (head, prefix, n, len(body), body)

    return make


def nchan_post_maker(port: int, rooms: Sequence[str], bodies: Sequence[bytes]) -> Make:
    heads = NchanFeed(port, rooms).heads  # `POST /pub/{room}` … `Content-Length: `
    counter = itertools.count()

    def make() -> bytes:
        n = next(counter)
        body = bodies[n % len(bodies)]
        return b"%b%d\r\n\r\n%b" % (heads[n % len(heads)], len(body), body)

    return make


def cycling(items: Sequence[bytes]) -> Make:
    it = itertools.cycle(items)
    return lambda: next(it)


# -- the Publisher ------------------------------------------------------------------------------


async def publisher_rate(
    make_publisher: Callable[[], Publisher],
    room: str,
    per_call: int,
    concurrency: int,
    seconds: float,
    redis_pid: int,
    server_cpu: Callable[[], float] | None = None,
) -> PublisherRun:
    """`concurrency` tasks calling `emit` (one log) or `emit_many` for `seconds`."""
    loop = asyncio.get_running_loop()
    errors = 0
    logs = 0
    async with make_publisher() as pub:
        await pub.emit(room, "warm-up", agent_type="bench")
        batch = [
            {"agentType": "bench", "level": "info", "message": f"log {i}", "metadata": {"i": i}}
            for i in range(per_call)
        ]
        stop = loop.time() + seconds

        async def worker() -> None:
            nonlocal errors, logs
            seq = 0
            while loop.time() < stop:
                seq += 1
                try:
                    if per_call == 1:
                        await pub.emit(room, "a log", agent_type="bench", metadata={"seq": seq})
                    else:
                        await pub.emit_many(room, batch)
                except Exception:  # a PublishError, counted: the rate is of stored logs
                    errors += 1
                    continue
                logs += per_call

        cpu0, redis0 = time.process_time(), proc_cpu_seconds(redis_pid)
        server0 = server_cpu() if server_cpu else 0.0
        t0 = loop.time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = loop.time() - t0
    return PublisherRun(
        "redis" if server_cpu is None else "http",
        per_call,
        concurrency,
        wall,
        logs / wall,
        (time.process_time() - cpu0) / wall,
        (proc_cpu_seconds(redis_pid) - redis0) / wall,
        (server_cpu() - server0) / wall if server_cpu else float("nan"),
        errors,
    )


PUBLISHER_MODES: Final = ((1, 1), (1, 64), (BATCH, 1), (BATCH, 8))  # (per call, concurrency)


# -- the run ------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, redis: PrivateRedis) -> None:
        self.args = args
        self.redis = redis
        self.opts = Options(args.conns, args.depth, args.seconds, args.warm)
        self.report = Report()
        self.quiet = QuietCores(
            [c for c in (args.server_cpu, args.client_cpu) if c is not None], 20, 90
        )
        tag = secrets.token_hex(3)
        self.rooms = [f"bench-pub-{tag}-{i}" for i in range(args.rooms)]
        factory = LogFactory(args.payload_bytes)
        self.logs = factory.batch(64)
        self.batches = [b"[" + b",".join(factory.batch(BATCH)) + b"]" for _ in range(4)]

    def target(self, system: System | None) -> Target:
        if system is None:  # Redis itself is the server
            pid = self.redis.pid
            return Target(self.redis.port, RespPipe, lambda: proc_cpu_seconds(pid), pid)
        return Target(system.port, HttpPipe, system.cpu_seconds, self.redis.pid)

    async def with_system(self, system: System, body: Callable[[System], Awaitable[None]]) -> None:
        await self.quiet.wait(say)
        system.start()
        try:
            await system.wait_ready()
            await body(system)
        finally:
            left = system.stop()
            if left:
                self.report.notes.append(f"{system.key}: leftover processes {left} stopped")
            await flush_redis(self.redis.url)

    def add(self, load: Load) -> None:
        (self.report.latency if load.offered_s is not None else self.report.loads).append(load)
        say(
            f"  {load.system:8} {load.what:34} {load.requests_s:>10,.0f} req/s "
            f"({load.logs_s:,.0f} logs/s) server {load.server_core:.0%} "
            f"load gen {load.loadgen_core:.0%} redis {load.redis_core:.0%} "
            f"p50 {load.p50_ms:.2f} p99 {load.p99_ms:.2f} ms errors {load.errors}"
        )
        if load.errors:
            self.report.notes.append(
                f"{load.system} {load.what}: {load.errors} answers were not a success "
                f"(first: {load.first_error})"
            )

    async def roomlogs(self, system: System) -> None:
        target = self.target(system)
        opts = self.opts
        post = roomlogs_post_maker(system.port, self.rooms, self.logs)
        say("roomlogs")
        self.add(await closed_loop(target, get_maker(system.port, "/healthz"), HEALTHZ,
                                   system.key, 0, opts))  # fmt: skip
        async with self.spy(system, "one"):
            one = await closed_loop(target, post, POST_ONE, system.key, 1, opts)
        self.add(one)
        batch = roomlogs_post_maker(system.port, self.rooms, self.batches)
        async with self.spy(system, "batch"):
            self.add(await closed_loop(target, batch, POST_BATCH, system.key, BATCH, opts))
        await self.quiet.wait(say)
        self.add(await open_loop(target, post, POST_ONE, system.key, one.requests_s / 2, opts))
        token = mint_token(SECRET, rooms=["*"], publish=["*"], ttl=6 * 3600, sub="bench")
        for per_call, concurrency in PUBLISHER_MODES[1:]:
            run = await publisher_rate(
                lambda: Publisher(url=system.url, token=token),
                self.rooms[0], per_call, concurrency, self.args.publisher_seconds,
                self.redis.pid, system.cpu_seconds,
            )  # fmt: skip
            self.publisher(run)

    def spy(self, system: System, load: str) -> contextlib.AbstractAsyncContextManager[None]:
        """`--profile one|batch`: py-spy on roomlogs through that closed loop."""
        if self.args.profile != load or system.proc is None:
            return contextlib.nullcontext()
        out = RESULTS_DIR / f"publish-{self.args.started}-{load}-py-spy.txt"
        return spying(system.proc.pid, out, self.args.client_cpu)

    async def minimal(self, system: System) -> None:
        say("minimal")
        get = get_maker(system.port, "/healthz")
        self.add(await closed_loop(self.target(system), get, HEALTHZ, system.key, 0, self.opts))

    async def nchan(self, system: System) -> None:
        say("nchan")
        target = self.target(system)
        opts = self.opts
        get = get_maker(system.port, "/healthz")
        self.add(await closed_loop(target, get, HEALTHZ, system.key, 0, opts))
        post = nchan_post_maker(system.port, self.rooms, self.logs)
        one = await closed_loop(target, post, NCHAN_POST, system.key, 1, opts)
        self.add(one)
        await self.quiet.wait(say)
        self.add(await open_loop(target, post, NCHAN_POST, system.key, one.requests_s / 2, opts))

    async def redis_alone(self) -> None:
        say("redis")
        await self.quiet.wait(say)
        target = self.target(None)
        channels = [PLAIN.channel(r).encode() for r in self.rooms]
        publishes = [resp(b"PUBLISH", channels[i % len(channels)], log)
                     for i, log in enumerate(self.logs)]  # fmt: skip
        self.add(await closed_loop(target, cycling(publishes), PUBLISH, "redis", 1, self.opts))
        feed = ScriptFeed(self.redis.url, self.rooms)
        await feed.send([(0, self.logs[0])])  # loads the script, reads the envelope secret
        await feed.close()
        heads = feed.heads
        scripts = [b"%b$%d\r\n%b\r\n" % (heads[i % len(heads)], len(log), log)
                   for i, log in enumerate(self.logs)]  # fmt: skip
        self.add(await closed_loop(target, cycling(scripts), SCRIPT, "redis", 1, self.opts))
        for per_call, concurrency in PUBLISHER_MODES:
            run = await publisher_rate(
                lambda: Publisher(redis_url=self.redis.url),
                self.rooms[0], per_call, concurrency, self.args.publisher_seconds,
                self.redis.pid,
            )  # fmt: skip
            self.publisher(run)

    def publisher(self, run: PublisherRun) -> None:
        self.report.publisher.append(run)
        say(
            f"  Publisher {run.transport:5} x{run.per_call:<3} concurrency {run.concurrency:<3} "
            f"{run.logs_s:>9,.0f} logs/s  process {run.process_core:.0%} "
            f"redis {run.redis_core:.0%} errors {run.errors}"
        )

    async def all(self) -> Report:
        args = self.args
        cpus = None if args.server_cpu is None else str(args.server_cpu)
        for key in args.systems:
            if key == "roomlogs":
                system: System = Roomlogs(self.redis.url, args.workdir, cpus, 0)
                await self.with_system(system, self.roomlogs)
            elif key == "minimal":
                await self.with_system(Minimal(self.redis.url, args.workdir, cpus, 0), self.minimal)
            elif key == "nchan":
                await self.with_system(Nchan(self.redis.url, args.workdir, cpus, 0), self.nchan)
            elif key == "redis":
                await self.redis_alone()
        return self.report


# -- the command --------------------------------------------------------------------------------

SYSTEM_KEYS: Final = ("roomlogs", "minimal", "nchan", "redis")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.publish", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    p.add_argument("--quick", action="store_true", help="shorter phases: ~2 minutes")
    p.add_argument(
        "--systems", type=systems_among(SYSTEM_KEYS), default=list(SYSTEM_KEYS),
        help="comma-separated, among " + ",".join(SYSTEM_KEYS),
    )  # fmt: skip
    p.add_argument("--conns", type=int, default=16, help="keep-alive connections")
    p.add_argument("--depth", type=int, default=8, help="requests in flight per connection")
    p.add_argument("--seconds", type=float, default=None, help="one measurement (8; quick 3)")
    p.add_argument("--warm", type=float, default=0.5, help="seconds before measuring")
    p.add_argument(
        "--publisher-seconds", type=float, default=None, help="one Publisher mode (5; quick 2)"
    )
    p.add_argument("--rooms", type=int, default=10, help="rooms the logs go to, in turn")
    p.add_argument("--payload-bytes", type=int, default=256, help="size of one log's JSON")
    p.add_argument("--server-cpu", type=int, default=0, help="core for the servers")
    p.add_argument("--client-cpu", type=int, default=1, help="core for load generator + redis")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/)")
    p.add_argument(
        "--profile", choices=("one", "batch"), default=None,
        help="py-spy roomlogs through the single-log or the 100-log POST loop "
        "(bench/results/publish-<timestamp>-<which>-py-spy.txt)",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.seconds is None:
        args.seconds = 3.0 if args.quick else 8.0
    if args.publisher_seconds is None:
        args.publisher_seconds = 2.0 if args.quick else 5.0
    if args.no_pin:
        args.server_cpu = args.client_cpu = None
    args.started = utc_stamp()
    return args


async def amain(args: argparse.Namespace) -> int:
    out = args.out or RESULTS_DIR / f"publish-{args.started}.json"
    args.workdir = out.with_suffix("").with_name(out.stem + "-logs")
    args.workdir.mkdir(parents=True, exist_ok=True)
    redis = PrivateRedis(args.client_cpu)
    started = time.monotonic()
    bench = Bench(args, redis)
    try:
        redis.start()
        report = await bench.all()
    except SetupError as exc:
        say(f"setup failed: {exc}")
        return 1
    finally:
        redis.stop()
        write_result(out, "publish", args, [], **_doc(bench.report))
    print(markdown(report))
    print(f"\nJSON: {shown(out)}")
    say(f"took {(time.monotonic() - started) / 60:.1f} min")
    return 0


def _doc(report: Report) -> dict[str, Any]:
    return {
        "loads": [asdict(x) for x in report.loads],
        "latency": [asdict(x) for x in report.latency],
        "publisher": [asdict(p) for p in report.publisher],
        "goals": [asdict(g) for g in goals(report)],
        "notes": report.notes,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    problem = pin_load_generator(args.server_cpu, args.client_cpu)
    if problem is not None:
        say(f"setup failed: {problem}")
        return 1
    args.systems = without_missing_nchan(args.systems)
    import uvloop

    return uvloop.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
