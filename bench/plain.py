"""What a replayable plain PUBLISH costs: a legacy backend's bare `PUBLISH room:R:logs <json>`
against the service's own publish script, measured in one run.

    .venv/bin/python -m bench.plain      # 500 logs/s for 10 s, 10 streams, 1 and 3 gateways
    .venv/bin/python -m bench.plain --rate 1000 --gateways 1,2,3 --rev HEAD

For each number of gateways G it starts G roomlogs processes, as `bench.compare` starts roomlogs
(`python -m service serve`, REDIS_URL set), all on core 0. The load generator and the private
redis-server share core 1. The streams are all on the first gateway. The others receive every
log and run PLAIN_SCRIPT too, as in a deployment. Then two phases run in turn, each on a fresh
room:

- `script`: the service's publish script (`ScriptFeed`: XADD + PUBLISH of the envelope);
- `plain`: `PUBLISH room:R:logs <log>` of the same logs (`PlainFeed`). Every gateway validates
  the log and runs PLAIN_SCRIPT; one of them stores it (the claim), and its envelope is what
  the streams get.

A phase is one `Rig.step`: `--rate` logs/s for `--seconds`, with latency read on every stream.
It measures:

- publish → SSE receipt p50/p90/p99;
- Redis CPU per log (`INFO cpu`), its calls per log (`INFO commandstats`), and the gateways'
  CPU per log (/proc, all G);
- the room's claim keys (`room:R:plain:*`) and Redis `used_memory` at the end.

It checks that every stream got every log once, in order, with a growing id (the bytes as
`service.sse` reads them), and that `XLEN room:R:history` equals the logs sent. A check that
fails fails the run (exit 2).

The Markdown goes to stdout, progress to stderr, and the JSON to bench/results/plain-<UTC>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Final

import redis.asyncio as aioredis

from service.auth import mint_token
from service.broker.keys import PLAIN

from ._common import RESULTS_DIR, SECRET, SetupError, say, shown
from ._procs import pin_load_generator, raise_nofile
from ._redis import PrivateRedis, RedisTap, flush_redis, pubsub_clients
from .cases import parse_counts
from .metering import QuietCores, UsageMeter
from .publishers import LogFactory, ScriptFeed, _Replies, bulk
from .reader import KeepingStream, Pool, Recorder, check_framing, events_of
from .records import Latency
from .report_plain import FEEDS, Phase, line, plain_markdown, problems, stream_problem
from .results import choose_source, utc_stamp, write_result
from .stepping import Rig, Rules
from .systems import Roomlogs
from .verdicts import Cores

WARM_LOGS: Final = 3  # of each feed, on two streams of a room of their own
MAX_HISTORY: Final = 1_000_000  # the most HISTORY_MAX may be
IDLE_S: Final = 2.0  # the gateways' and Redis' idle CPU is read over this


class Gateway(Roomlogs):
    """roomlogs as `bench.compare` runs it, keeping `history_max` logs a room (HISTORY_MAX):
    more than a phase sends, so that XLEN counts every log stored."""

    def __init__(self, redis_url: str, workdir: Path, cpus: str | None, streams: int,
                 *, source: Path, history_max: int) -> None:  # fmt: skip
        super().__init__(redis_url, workdir, cpus, streams, source=source)
        self.history_max = history_max

    def env(self) -> dict[str, str]:
        return {**super().env(), "HISTORY_MAX": str(self.history_max)}


class PlainFeed(ScriptFeed):
    """`PUBLISH room:R:logs <log>`, what a legacy backend sends: `ScriptFeed`'s connection and
    pipelining (a tick's logs in one write, pre-encoded RESP), with another command."""

    name = "plain PUBLISH"

    async def _connect(self) -> _Replies:
        conn = await super()._connect()
        self.heads = [b"*3\r\n" + bulk(b"PUBLISH", PLAIN.channel(r).encode()) for r in self.rooms]
        return conn


# -- the measurement -------------------------------------------------------------------------------


async def _redis_cpu(client: aioredis.Redis) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _used_memory(client: aioredis.Redis) -> int:
    return int((await client.info("memory"))["used_memory"])


async def _commands(client: aioredis.Redis) -> dict[str, tuple[int, int]]:
    """INFO commandstats: command -> (calls, µs inside it), without INFO's own."""
    stats = await client.info("commandstats")
    return {
        k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
        for k, v in stats.items()
        if isinstance(v, dict) and k != "cmdstat_info"
    }


class Bench:
    """G gateways on one private Redis: the warm-up, the idle CPU, the phases."""

    def __init__(self, args: argparse.Namespace, redis: PrivateRedis, quiet: QuietCores) -> None:
        self.args = args
        self.redis = redis
        self.quiet = quiet
        self.token = mint_token(SECRET, rooms=["*"], ttl=6 * 3600, sub="bench")
        self.cores = Cores(None if args.server_cpu is None else [args.server_cpu], args.client_cpu)
        self.rules = Rules(args.seconds, 2.0, 0.15, 1, 500.0, stop_at_client_limit=False)
        self.tag = utc_stamp().lower()
        # Above what a phase sends (Rig.step sends round(rate x seconds)): nothing is trimmed.
        self.history_max = min(MAX_HISTORY, 2 * round(args.rate * args.seconds) + 1000)

    def pool(self, gateway: Roomlogs, room: str, recorder: Recorder) -> Pool:
        return Pool(
            gateway.port,
            [room],
            lambda r: gateway.request(r, self.token),
            gateway.framing,
            recorder,
        )

    async def gateways(self, count: int, client: aioredis.Redis) -> list[Phase]:
        args = self.args
        cpus = None if args.server_cpu is None else str(args.server_cpu)
        gateways = [
            Gateway(self.redis.url, args.workdir, cpus, args.streams, source=args.source,
                    history_max=self.history_max)
            for _ in range(count)
        ]  # fmt: skip
        say(f"\n== {count} gateway(s), logs in {', '.join(str(g.log_path) for g in gateways)}")
        await self.quiet.wait(say)
        phases: list[Phase] = []
        try:
            for g in gateways:
                g.start()
            for g in gateways:
                await g.wait_ready()
            subscriptions = await pubsub_clients(self.redis.url)
            if subscriptions != count:
                raise SetupError(f"{subscriptions} Redis subscriptions for {count} gateways")
            await self.warm_up(gateways[0], count)
            pids = [g.proc.pid for g in gateways if g.proc is not None]
            meter = UsageMeter(lambda: sum(g.cpu_seconds() for g in gateways), self.redis.pid, pids)
            meter.start()
            cpu0 = await _redis_cpu(client)
            await asyncio.sleep(IDLE_S)
            idle = (meter.stop().server, (await _redis_cpu(client) - cpu0) / IDLE_S)
            for feed in FEEDS:
                phase = Phase(feed, count, args.streams, args.rate)
                phase.idle_gateways_core, phase.idle_redis_core = idle
                try:
                    await self.phase(phase, gateways, meter, client)
                except SetupError as exc:
                    phase.error = str(exc)
                say(line(phase))
                phases.append(phase)
        finally:
            for g in gateways:
                if left := g.stop():
                    say(f"  gateway processes outlived their stop and were killed: {left}")
            await flush_redis(self.redis.url)
        return phases

    async def warm_up(self, gateway: Roomlogs, count: int) -> None:
        """Both paths run a few times, and the byte scan agrees with `service.sse`."""
        room = f"bench-plain-warm-{self.tag}-{count}"
        pool = self.pool(gateway, room, Recorder())
        logs = LogFactory(self.args.payload_bytes)
        await pool.open(2, concurrency=2, sampled=0, keep=True)
        for kind in (ScriptFeed, PlainFeed):
            feed = kind(self.redis.url, [room])
            for _ in range(WARM_LOGS):
                await feed.send([(0, logs.batch(1)[0])])
            await feed.close()
        left = await pool.wait_all([2 * WARM_LOGS], time.monotonic() + 5)
        if left:
            raise SetupError(f"warm-up: {len(left)} streams missed logs ({left[0].error})")
        for stream in pool.streams:
            assert isinstance(stream, KeepingStream)
            check_framing(stream, "roomlogs")
        await pool.close()

    async def phase(
        self, phase: Phase, gateways: Sequence[Roomlogs], meter: UsageMeter, client: aioredis.Redis
    ) -> None:
        args = self.args
        room = f"bench-plain-{self.tag}-{phase.gateways}-{phase.feed}"
        recorder = Recorder()
        pool = self.pool(gateways[0], room, recorder)
        feed = (PlainFeed if phase.feed == "plain" else ScriptFeed)(self.redis.url, [room])
        feed.limits = (b"%d" % self.history_max, feed.limits[1])  # the gateways' MAXLEN
        rig = Rig(
            pool, recorder, feed, LogFactory(args.payload_bytes), meter, self.rules, self.cores
        )
        tap: RedisTap | None = None
        try:
            await pool.open(args.streams, concurrency=50, sampled=0, keep=True)
            # In both phases, for the same load; in `plain` it reads each log twice (its
            # plain message and its envelope), so only the script's is the floor.
            tap = await RedisTap.open(self.redis.port, PLAIN.channel(room), recorder)
            await self.quiet.wait(say)
            commands0 = await _commands(client)
            cpu0, memory0 = await _redis_cpu(client), await _used_memory(client)
            step = await rig.step(args.rate, args.seconds, latency_all=True)
            cpu1, memory1 = await _redis_cpu(client), await _used_memory(client)
            commands1 = await _commands(client)
            await asyncio.sleep(0.3)  # a late second store would still show in XLEN
            phase.history = await client.xlen(PLAIN.history(room))
            match = PLAIN.plain(room, "*")
            phase.claim_keys = len([k async for k in client.scan_iter(match=match, count=1000)])
            phase.keys = await client.dbsize()
        finally:
            if tap is not None:
                tap.close()
            await feed.close()
            streams = list(pool.streams)
            await pool.close()  # its streams keep their bytes for the check below
        sent = max(step.sent, 1)  # for the rates; the checks read step.sent
        phase.sent = step.sent
        phase.publish_rate = step.publish_rate
        phase.sustained = step.sustained
        phase.latency = step.latency
        if phase.feed == "script" and tap is not None and tap.latencies:
            phase.redis_floor = Latency.of(tap.latencies)
        phase.redis_us_per_log = (cpu1 - cpu0) * 1e6 / sent
        phase.gateways_us_per_log = step.server_cpu_us_per_delivery * step.delivered / sent
        phase.gateways_core, phase.redis_core = step.server_core, step.redis_core
        if sum(step.workers) > 0:  # each gateway's share of the CPU per log
            phase.each_gateway_us_per_log = [
                phase.gateways_us_per_log * w / sum(step.workers) for w in step.workers
            ]
        phase.loadgen_core = step.loadgen_core
        phase.other_load = max(step.other_server_core, step.other_client_core)
        phase.used_memory_delta = memory1 - memory0
        for name, (calls, usec) in sorted(commands1.items()):
            calls0, usec0 = commands0.get(name, (0, 0))
            if calls > calls0:
                phase.commands_per_log[name] = (calls - calls0) / sent
                phase.command_us[name] = (usec - usec0) / (calls - calls0)
        for stream in streams:
            assert isinstance(stream, KeepingStream)
            events = [e for e in events_of(bytes(stream.raw)) if e.event == "log"]
            found = stream_problem(
                [(e.id, e.json()["metadata"]["seq"]) for e in events], 0, step.sent
            )
            phase.exact_streams += found is None
            phase.problem = phase.problem or found


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.plain", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    p.add_argument("--rate", type=float, default=500.0, help="logs/s in each phase")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    p.add_argument("--streams", type=int, default=10, help="streams on the room (first gateway)")
    p.add_argument("--gateways", type=parse_counts, default=[1, 3], help="gateway counts: 1,3")
    p.add_argument("--payload-bytes", type=int, default=256, help="size of one log's JSON")
    p.add_argument("--server-cpu", type=int, default=0, help="core for the gateways")
    p.add_argument("--client-cpu", type=int, default=1, help="core for load generator + redis")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    p.add_argument("--quiet-wait", type=float, default=15, help="wait up to this for idle cores")
    p.add_argument("--quiet-budget", type=float, default=60, help="total quiet waiting at most")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/)")
    p.add_argument("--rev", default=None, help="run the gateways from this git revision")
    args = p.parse_args(argv)
    if args.rate <= 0 or args.seconds <= 0 or args.streams < 1:
        p.error("--rate, --seconds and --streams must be positive")
    if args.rate * args.seconds > MAX_HISTORY // 2 - 1000:
        p.error("--rate x --seconds: more logs than a room's history can keep")
    if args.no_pin:
        args.server_cpu = args.client_cpu = None
    args.started = utc_stamp()
    args.rev_commit = None
    return args


def pinning(args: argparse.Namespace) -> str:
    if args.server_cpu is None:
        return "unpinned"
    return (
        f"every gateway on core {args.server_cpu}, the load generator and redis-server on "
        f"core {args.client_cpu}"
    )


def write(out: Path, args: argparse.Namespace, phases: Sequence[Phase]) -> None:
    found = [x for p in phases for x in problems(p)]
    write_result(
        out, "plain", args, [], pinning=pinning(args), problems=found,
        phases=[asdict(p) for p in phases],
    )  # fmt: skip


async def amain(args: argparse.Namespace) -> int:
    out = args.out or RESULTS_DIR / f"plain-{args.started}.json"
    args.workdir = out.with_name(out.stem + "-logs")  # the gateways' output (git-ignored)
    args.workdir.mkdir(parents=True, exist_ok=True)
    cores = [c for c in (args.server_cpu, args.client_cpu) if c is not None]
    quiet = QuietCores(cores, args.quiet_wait, args.quiet_budget)
    redis = PrivateRedis(args.client_cpu, extra=["--client-output-buffer-limit", "pubsub 0 0 0"])
    phases: list[Phase] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="roomlogs-plain-") as tmp:
        try:
            choose_source(args, Path(tmp), "gateways")
            redis.start()
            client = aioredis.Redis.from_url(redis.url, protocol=2)
            try:
                bench = Bench(args, redis, quiet)
                for count in args.gateways:
                    phases += await bench.gateways(count, client)
                    write(out, args, phases)  # what is done so far survives a crash
            finally:
                await client.aclose()
        except SetupError as exc:
            say(f"setup failed: {exc}")
            write(out, args, phases)
            return 1
        finally:
            redis.stop()
    write(out, args, phases)
    print(plain_markdown(phases, pinning(args)))
    print(f"\nJSON: {shown(out)}")
    say(f"took {(time.monotonic() - started) / 60:.1f} min")
    found = [x for p in phases for x in problems(p)]
    for x in found:
        say(f"CHECK FAILED: {x}")
    return 2 if found else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    problem = pin_load_generator(args.server_cpu, args.client_cpu)
    if problem is not None:
        say(f"setup failed: {problem}")
        return 1
    raise_nofile(args.streams * 2 + 1024)
    import uvloop

    return uvloop.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
