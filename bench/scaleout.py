"""What Redis and each gateway pay per log as gateways are added: SUBSCRIBE_MODE=pattern
against SUBSCRIBE_MODE=rooms with room affinity, on one Redis and on a 3-shard Cluster.

    .venv/bin/python -m bench.scaleout            # 1, 2, 4, 8 gateways, both modes, + Cluster
    .venv/bin/python -m bench.scaleout --quick    # 1 and 8 gateways, shorter windows

For every configuration (topology, mode, G gateways) it starts G roomlogs processes (`python
-m service serve`, as `bench.plain` does, all on core 0; the load generator and Redis on core
1), opens `--per-room` streams on each of `--rooms` rooms, each room's streams on the gateway
that nginx's `hash $room consistent` would pick (report_scaleout.Ring: the streams connect
straight to that gateway, no nginx in the path), and publishes `--rate` logs/s round-robin
over the rooms with the service's publish script (`ScriptFeed`; on the Cluster the sharded
script on each room's primary). Over that window it reads:

- Redis' bytes out per log: INFO `total_net_output_bytes` (every node of a Cluster), minus the
  meter's own INFO reply, the replication stream (`total_net_repl_output_bytes`, which 7.0
  counts in both) and the publisher's replies, which the publisher counts from what it parsed:
  what is left went to the gateways (Redis 7.0 has no per-client byte counters);
- Redis' CPU per log (INFO cpu, used_cpu_user + used_cpu_sys);
- each gateway's CPU (/proc/PID/stat) minus its idle rate, per log of its own rooms, and an
  estimate of what it spends per log of a room it does not serve (report_scaleout.foreign_us).

It checks that every stream got every log of its room, and which subscriptions Redis holds
(`PUBSUB NUMPAT`, `PUBSUB CHANNELS`, `PUBSUB SHARDCHANNELS`): a mode that did not take effect
(this build ignores SUBSCRIBE_MODE=rooms) is marked, not hidden. The Cluster runs when this
tree has its broker (service/broker/cluster.py) and tests/support/cluster.py; otherwise it says
so. Markdown to stdout, progress to stderr, JSON to bench/results/scaleout-<UTC>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

import orjson

from service.auth import mint_token

from ._common import HOST, RESULTS_DIR, SECRET, SetupError, say, shown
from ._procs import busy_shares, core_times, pin_load_generator, raise_nofile
from ._redis import PrivateRedis
from .cases import parse_counts
from .metering import QuietCores
from .publishers import LogFactory, owed, publish_at
from .reader import LF_CONNECTED, Pool, Recorder
from .report_scaleout import Config, configs_of, line, markdown, partition
from .results import choose_source, utc_stamp, write_result
from .scaleout_redis import (
    ClusterFeed,
    CountingFeed,
    Topology,
    cluster_missing,
    held,
    redis_totals,
    sent_by_connection,
    split_bytes,
    subscriptions,
    with_cluster,
)
from .systems import Roomlogs

MODES: Final = ("pattern", "rooms")
IDLE_S: Final = 1.5  # each gateway's idle CPU (streams open, no logs) is read over this


class Gateway(Roomlogs):
    """roomlogs with SUBSCRIBE_MODE set, on one Redis or (seeds given) on the Cluster."""

    def __init__(self, redis_url: str, workdir: Path, cpus: str | None, streams: int,
                 *, source: Path, mode: str, seeds: str = "",
                 keepers: int | None = None) -> None:  # fmt: skip
        super().__init__(redis_url, workdir, cpus, streams, source=source)
        self.mode = mode
        self.seeds = seeds
        self.keepers = keepers

    def env(self) -> dict[str, str]:
        env = {**super().env(), "SUBSCRIBE_MODE": self.mode}
        if self.keepers is not None:
            env["PLAIN_KEEPERS"] = str(self.keepers)
        if self.seeds:  # an empty REDIS_URL reads as unset
            env.update(REDIS_URL="", REDIS_CLUSTER_NODES=self.seeds)
        return env


class Bench:
    def __init__(self, args: argparse.Namespace, quiet: QuietCores) -> None:
        self.args = args
        self.quiet = quiet
        self.token = mint_token(SECRET, rooms=["*"], ttl=6 * 3600, sub="bench")
        self.rooms = [f"room-{i:04d}" for i in range(args.rooms)]

    async def run(self, top: Topology, mode: str, count: int) -> Config:
        args = self.args
        c = Config(top.name, mode, count, args.rooms, args.per_room, args.rate)
        parts = partition(self.rooms, count)
        c.rooms_per_gateway = [len(p) for p in parts]
        cpus = None if args.server_cpu is None else str(args.server_cpu)
        gateways = [
            Gateway(top.redis_url, args.workdir, cpus, args.rooms * args.per_room,
                    source=args.source, mode=mode, seeds=top.seeds,
                    keepers=args.plain_keepers)
            for _ in range(count)
        ]  # fmt: skip
        say(f"\n== {c.key}: logs in {shown(args.workdir)}")
        await self.quiet.wait(say)
        pools: list[Pool] = []
        feed = top.feed(self.rooms)
        try:
            for g in gateways:
                g.start()
            await asyncio.gather(*(g.wait_ready() for g in gateways))
            recorder = Recorder()
            pools = [
                Pool(g.port, [self.rooms[i] for i in part], self._request(g), LF_CONNECTED,
                     recorder)
                for g, part in zip(gateways, parts, strict=True)
            ]  # fmt: skip
            per = max(10, 100 // count)
            await asyncio.gather(
                *(p.open(args.per_room, concurrency=per, sampled=0) for p in pools if p.rooms)
            )
            await feed.connect()
            await self.measure(c, top, gateways, pools, parts, feed)
        except SetupError as exc:
            c.error = str(exc)
        finally:
            await feed.close()
            for p in pools:
                await p.close()
            for g in gateways:
                if left := g.stop():
                    say(f"  gateway processes outlived their stop and were killed: {left}")
            await top.flush()
        say(line(c))
        return c

    def _request(self, gateway: Gateway) -> Callable[[str], bytes]:
        return lambda room: gateway.request(room, self.token)

    async def measure(
        self,
        c: Config,
        top: Topology,
        gateways: Sequence[Gateway],
        pools: Sequence[Pool],
        parts: Sequence[Sequence[int]],
        feed: CountingFeed | ClusterFeed,
    ) -> None:
        args = self.args
        subs = await subscriptions(top.nodes)
        held(c, [g.pids for g in gateways], subs)
        cpu0 = [g.cpu_seconds() for g in gateways]
        await asyncio.sleep(IDLE_S)
        c.gateway_idle_core = [
            (g.cpu_seconds() - a) / IDLE_S for g, a in zip(gateways, cpu0, strict=True)
        ]
        for p in pools:
            p.rebase()
        r0 = await redis_totals(top.nodes)
        tcp0 = sent_by_connection(top.nodes)
        cores0, loadgen0, t0 = core_times(), time.process_time(), time.monotonic()
        cpu0 = [g.cpu_seconds() for g in gateways]
        count = round(args.rate * args.seconds)
        run = await publish_at(
            feed, LogFactory(args.payload_bytes), len(self.rooms), args.rate, count,
            args.seconds * 1.5 + 2,
        )  # fmt: skip
        deadline = time.monotonic() + max(5.0, args.seconds)
        behind = 0
        for pool, part in zip(pools, parts, strict=True):
            left = await pool.wait_all([run.per_room[i] for i in part], deadline)
            behind += len(left)
        c.wall_s = time.monotonic() - t0
        c.gateway_cpu_s = [g.cpu_seconds() - a for g, a in zip(gateways, cpu0, strict=True)]
        c.loadgen_core = (time.process_time() - loadgen0) / c.wall_s
        c.cores = busy_shares(cores0, core_times())
        tcp1 = sent_by_connection(top.nodes)
        r1 = await redis_totals(top.nodes)
        if tcp0 is not None and tcp1 is not None:
            split_bytes(c, [g.pids for g in gateways], subs, tcp0, tcp1)
        await asyncio.sleep(0.3)  # a log delivered twice would show by now
        c.extra = sum(
            max(0, s.received - s.base - run.per_room[part[s.room]])
            for pool, part in zip(pools, parts, strict=True)
            for s in pool.streams
        )
        c.sent, c.behind = run.sent, behind
        c.complete = behind == 0 and run.sent == count and c.extra == 0
        span = max(run.last_wall - run.first_wall, 1e-9)
        c.publish_rate = (run.sent - 1) / span if run.sent > 1 else math.nan
        c.node_out_bytes = [b - a for a, b in zip(r0.out, r1.out, strict=True)]
        c.repl_out_bytes = r1.repl - r0.repl
        # Redis 7.0's total_net_output_bytes counts the replication stream too (measured: a
        # shard primary's grew by a subscriber's message + the reply + the replica's stream).
        c.redis_out_bytes = sum(c.node_out_bytes) - r0.reply - c.repl_out_bytes
        c.redis_cpu_s = r1.cpu - r0.cpu
        c.commands_per_log = {
            name: (n - r0.calls.get(name, 0)) / run.sent
            for name, n in sorted(r1.calls.items())
            if n > r0.calls.get(name, 0) and run.sent
        }
        c.publisher_bytes = feed.reply_bytes
        c.own_logs = [sum(run.per_room[i] for i in part) for part in parts]
        assert sum(c.own_logs) == run.sent
        assert owed(run.sent, len(self.rooms)) == run.per_room


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.scaleout", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    p.add_argument("--gateways", type=parse_counts, default=None, help="one Redis: 1,2,4,8")
    p.add_argument("--modes", default="pattern,rooms", help="SUBSCRIBE_MODE values to run")
    p.add_argument("--cluster-gateways", default="1,4", help="on the Cluster ('' or 0: skip)")
    p.add_argument("--cluster-mode", default="pattern", choices=MODES)
    p.add_argument(
        "--plain-keepers", type=int, default=None, help="PLAIN_KEEPERS of the gateways (default 2)"
    )
    p.add_argument("--rooms", type=int, default=1000)
    p.add_argument("--per-room", type=int, default=None, help="streams per room (default 2)")
    p.add_argument("--rate", type=float, default=2000.0, help="logs/s, round-robin over rooms")
    p.add_argument("--seconds", type=float, default=None, help="each window (default 8)")
    p.add_argument("--payload-bytes", type=int, default=256, help="size of one log's JSON")
    p.add_argument("--quick", action="store_true", help="1 and 8 gateways, 1 stream a room, 4 s")
    p.add_argument("--server-cpu", type=int, default=0, help="core for the gateways")
    p.add_argument("--client-cpu", type=int, default=1, help="core for load generator + redis")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    p.add_argument("--quiet-wait", type=float, default=5, help="wait up to this for idle cores")
    p.add_argument("--quiet-budget", type=float, default=30, help="total quiet waiting at most")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/)")
    p.add_argument("--rev", default=None, help="run the gateways from this git revision")
    p.add_argument(
        "--render", type=Path, nargs="+", default=None, metavar="JSON",
        help="print the tables of these results (their configurations together), run nothing",
    )  # fmt: skip
    args = p.parse_args(argv)
    args.gateways = args.gateways or ([1, 8] if args.quick else [1, 2, 4, 8])
    args.per_room = args.per_room or (1 if args.quick else 2)
    args.seconds = args.seconds or (4.0 if args.quick else 8.0)
    args.modes = [m for m in args.modes.split(",") if m]
    if not args.modes or any(m not in MODES for m in args.modes):
        p.error(f"--modes: a list of {', '.join(MODES)}")
    raw = args.cluster_gateways
    args.cluster_gateways = [] if raw in ("", "0") else parse_counts(raw)
    if args.rate <= 0 or args.seconds <= 0 or args.rooms < 1 or args.per_room < 1:
        p.error("--rate, --seconds, --rooms and --per-room must be positive")
    if args.no_pin:
        args.server_cpu = args.client_cpu = None
    args.started = utc_stamp()
    args.rev_commit = None
    return args


def pinning(args: argparse.Namespace) -> str:
    if args.server_cpu is None:
        return "unpinned"
    return (
        f"every gateway on core {args.server_cpu}, the load generator and redis-server (every "
        f"node of the Cluster) on core {args.client_cpu}"
    )


def write(out: Path, args: argparse.Namespace, configs: Sequence[Config], **extra: Any) -> None:
    write_result(
        out, "scaleout", args, [], pinning=pinning(args),
        configs=[asdict(c) for c in configs], **extra,
    )  # fmt: skip


async def amain(args: argparse.Namespace) -> int:
    out = args.out or RESULTS_DIR / f"scaleout-{args.started}.json"
    args.workdir = out.with_name(out.stem + "-logs")  # the gateways' output (git-ignored)
    args.workdir.mkdir(parents=True, exist_ok=True)
    cores = [c for c in (args.server_cpu, args.client_cpu) if c is not None]
    quiet = QuietCores(cores, args.quiet_wait, args.quiet_budget)
    configs: list[Config] = []
    started = time.monotonic()
    skipped = cluster_missing() if args.cluster_gateways else "not asked (--cluster-gateways 0)"
    bench = Bench(args, quiet)

    async def series(top: Topology, counts: Sequence[int], modes: Sequence[str]) -> None:
        for count in counts:  # the modes interleaved, so noise spreads over both
            for mode in modes:
                configs.append(await bench.run(top, mode, count))
                write(out, args, configs)  # what is done so far survives a crash

    redis = PrivateRedis(args.client_cpu, extra=["--client-output-buffer-limit", "pubsub 0 0 0"])
    with tempfile.TemporaryDirectory(prefix="roomlogs-scaleout-") as tmp:
        try:
            choose_source(args, Path(tmp), "gateways")
            redis.start()
            try:
                await series(Topology("redis", [(HOST, redis.port)], redis.url), args.gateways,
                             args.modes)  # fmt: skip
            finally:
                redis.stop()
            if skipped is None:
                await with_cluster(
                    args, lambda top: series(top, args.cluster_gateways, [args.cluster_mode])
                )
        except (SetupError, RuntimeError, OSError) as exc:
            say(f"setup failed: {exc}")
            write(out, args, configs, cluster_skipped=skipped)
            return 1
    write(out, args, configs, cluster_skipped=skipped)
    print(markdown(configs, pinning(args)))
    if skipped:
        print(f"\nRedis Cluster: not run ({skipped}).")
    print(f"\nJSON: {shown(out)}")
    say(f"took {(time.monotonic() - started) / 60:.1f} min")
    return 2 if any(c.error or not c.complete for c in configs) else 0


def render(paths: Sequence[Path]) -> str:
    """The Markdown of one or more result files, e.g. one Redis and a Cluster run apart; a
    configuration (topology, mode, gateways) found in an earlier file is not read again."""
    docs = [orjson.loads(p.read_bytes()) for p in paths]
    configs: list[Config] = []
    for doc in docs:
        seen = {c.key for c in configs}
        configs += [c for c in configs_of(doc) if c.key not in seen]

    def source(doc: dict[str, Any]) -> str:
        config = doc.get("config", {})
        rev = ""
        if config.get("rev"):
            rev = f", gateways from {config['rev']} ({(config.get('rev_commit') or '')[:10]})"
        return (
            f"`{doc['command']}` at {doc['started']} (commit "
            f"{doc['environment']['git_commit'][:10] or 'n/a: not a git tree'}{rev})"
        )

    sources = "; ".join(source(doc) for doc in docs)
    return markdown(configs, docs[0].get("pinning", "")) + f"\n\nFrom {sources}."


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        print(render(args.render))
        return 0
    problem = pin_load_generator(args.server_cpu, args.client_cpu)
    if problem is not None:
        say(f"setup failed: {problem}")
        return 1
    raise_nofile(args.rooms * args.per_room * 2 + 1024)
    import uvloop

    return uvloop.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
