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
import importlib.util
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Final

import orjson

from ._common import RESULTS_DIR, ROOT, SetupError, say, shown
from ._procs import pin_load_generator, raise_nofile
from ._redis import PrivateRedis
from .cases import (
    case_name,
    first_rate_of,
    fitted,
    make_system,
    parse_counts,
    parse_cpus,
    parse_rooms,
    parse_stream_query,
    parse_systems,
    pinning,
    plan,
    rooms_case,
    server_cores,
    unpinned_client,
)
from .measure import Phases, measure_case, new_run
from .metering import QuietCores
from .records import Case, Run
from .report import ORDER, compare_markdown
from .results import choose_source, utc_stamp, write_result
from .stepping import Rules
from .systems import without_missing_nchan
from .targets import targets
from .verdicts import Cores

DEFAULT_CHART: Final = ROOT / "docs" / "bench-fanout.png"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.compare", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    p.add_argument("--quick", action="store_true", help="1 x 1,000, 1,000 x 2, 2,000 idle, short")
    p.add_argument(
        "--systems",
        type=parse_systems,
        default=list(ORDER),
        help="comma-separated, among roomlogs,minimal,nchan,tutorial",
    )
    p.add_argument(
        "--streams", type=parse_counts, default=None, help="N for 1 room x N (100,1000,5000)"
    )
    p.add_argument(
        "--rooms",
        type=parse_rooms,
        default=(1000, 2),
        help="many rooms, ROOMSxSTREAMS (1000x2; none)",
    )
    p.add_argument(
        "--idle", type=int, default=None, help="idle streams for memory (10000; 0: none)"
    )
    p.add_argument("--no-workers2", action="store_true", help="skip roomlogs WORKERS=2")
    p.add_argument(
        "--workers-streams",
        type=parse_counts,
        default=None,
        help="N of --streams for roomlogs WORKERS=2 (default: those >= 1000)",
    )
    p.add_argument(
        "--workers-cpus",
        type=parse_cpus,
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
        type=parse_stream_query,
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
    args.started = utc_stamp()
    args.rev_commit = None
    return args


def write(path: Path, runs: Sequence[Run], args: argparse.Namespace) -> None:
    key_case = f"1x{args.key_streams}"
    found = [] if args.stream_query else targets(runs, key_case, rooms_case(args))
    write_result(path, "compare", args, runs, targets=[asdict(t) for t in found])


class Comparison:
    """Every case of the plan, every system in turn within a case."""

    def __init__(self, args: argparse.Namespace, redis: PrivateRedis) -> None:
        self.args = args
        self.redis = redis
        cores = [c for c in (args.server_cpu, args.client_cpu) if c is not None]
        self.quiet = QuietCores(cores, args.quiet_wait, args.quiet_budget)
        self.phases = Phases.from_args(args, connect_limit_s=15)
        self.rules = Rules.from_args(args, stop_at_client_limit=False)

    async def case(self, key: str, case: Case, start: float) -> Run:
        args = self.args
        system = make_system(key, case, args, self.redis.url)
        run = new_run(system, case, pinning(args, case))
        with unpinned_client(args, self.redis, case):
            return await measure_case(
                system,
                case,
                run,
                redis=self.redis,
                phases=self.phases,
                rules=self.rules,
                cores=Cores(server_cores(args, case), args.client_cpu),
                quiet=self.quiet,
                start_rate=start,
                say=say,
            )

    async def all(self, cases: Sequence[Case], runs: list[Run], out: Path) -> None:
        args = self.args
        best: dict[str, float] = {}
        for case in cases:
            for key in args.systems:
                start = first_rate_of(key, case, best)
                this, note = fitted(case, key, args.nofile)
                run = await self.case(key, this, start)
                if note:
                    run.notes.append(note)
                runs.append(run)
                if case.rooms == 1 and run.max_sustained is not None:
                    best[key] = run.max_sustained.achieved
                write(out, runs, args)  # what is done so far survives a crash
                if key == "roomlogs" and case.name in args.workers_cases:
                    # Right after WORKERS=1 on the same N, from the same first rate (the
                    # same grid of offered rates until a step fails).
                    two = Case(
                        f"{case.name}-w2", case.rooms, case.per_room, workers=2, query=case.query
                    )
                    runs.append(await self.case("roomlogs", two, start))
                    write(out, runs, args)


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
        try:
            choose_source(args, Path(tmp), "roomlogs")
            redis.start()
            await Comparison(args, redis).all(cases, runs, out)
        except SetupError as exc:
            say(f"setup failed: {exc}")
            write(out, runs, args)
            return 1
        finally:
            redis.stop()
    write(out, runs, args)
    key_case = case_name(f"1x{args.key_streams}", args)
    print(
        compare_markdown(
            runs,
            cases,
            key_case=key_case,
            rooms_case=rooms_case(args),
            stream_query=args.stream_query,
        )
    )
    print(f"\nJSON: {shown(out)}")
    if args.stream_query and args.chart == DEFAULT_CHART and not args.no_chart:
        # The committed chart is of unfiltered streams: a filtered run draws only on request.
        say(f"no chart: --stream-query given and no --chart PATH other than {DEFAULT_CHART}")
    elif not args.no_chart:
        try:
            from .chart import draw

            draw(orjson.loads(out.read_bytes()), args.chart)
            print(f"chart: {shown(args.chart)}")
        except ImportError as exc:
            say(f"no chart: {exc} (pip install -e '.[bench]')")
    say(f"took {(time.monotonic() - started) / 60:.1f} min")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cpus = os.sched_getaffinity(0)
    if args.server_cpu is not None and args.workers_cpus and not set(args.workers_cpus) <= cpus:
        say(f"setup failed: --workers-cpus must be among {sorted(cpus)}")
        return 1
    problem = pin_load_generator(args.server_cpu, args.client_cpu)
    if problem is not None:
        say(f"setup failed: {problem}")
        return 1
    # Client sockets, plus (the tutorial pattern) as many Redis connections in redis-server.
    biggest = max([args.idle, *args.streams, args.rooms[0] * args.rooms[1] if args.rooms else 0])
    needed = biggest * 2 + 4096
    limit = args.nofile = raise_nofile(needed)
    if limit < biggest + 1024:
        shrunk = max(100, limit - 1024) // 2
        say(f"open file limit {limit} < {needed}: idle streams cut to {shrunk}")
        args.idle = min(args.idle, shrunk)
        args.streams = [min(n, shrunk) for n in args.streams]
    missing = [
        name
        for name, needed_by in (("uvloop", True), ("sse_starlette", "tutorial" in args.systems))
        if needed_by and importlib.util.find_spec(name) is None
    ]
    missing += [] if args.no_chart or importlib.util.find_spec("matplotlib") else ["matplotlib"]
    if missing:
        say(f"setup failed: {', '.join(missing)} missing: .venv/bin/pip install -e '.[bench]'")
        return 1
    args.systems = without_missing_nchan(args.systems)
    import uvloop

    return uvloop.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
