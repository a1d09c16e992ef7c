"""Fan-out benchmark: one room, N SSE streams, one real service process, one private Redis.

    .venv/bin/python -m bench.fanout --streams 100,1000,5000

For each N it starts a fresh `python -m service serve` pinned to one core (the load generator and
the private redis-server share the other), then:

1. warms the service up, reads its RSS, opens N streams on one room, reads the RSS again
   (server memory per idle stream);
2. publishes logs through the service's own Redis publish path (its Lua `XADD` + `PUBLISH`
   script, one call per log) or `POST /api/v1/rooms/{room}/logs`, stepping the rate up until a
   step is no longer sustained (every log on every stream, no growing backlog, p99 within
   `--max-p99-ms`), then bisecting: the highest sustained step gives the max deliveries/s and
   the server CPU µs per delivery (from /proc/PID/stat);
3. publishes at a fixed moderate rate (`--latency-deliveries`, 10,000 deliveries/s) and
   measures publish→receive latency on every stream from the send time each log carries in
   `metadata.sentAt`, and the server CPU per delivery when logs go out one at a time.

It prints a Markdown table and writes bench/results/fanout-<timestamp>.json. It exits non-zero
only on a setup failure (a process that does not start, streams that cannot be opened). See
bench/README.md for what each number means and what it does not.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ._common import RESULTS_DIR, SetupError, say, shown
from ._procs import pin_load_generator, raise_nofile
from ._redis import PrivateRedis
from .cases import parse_counts
from .measure import Phases, measure_case, new_run
from .metering import QuietCores
from .records import Case, Run
from .report import fanout_markdown
from .results import choose_source, utc_stamp, write_result
from .stepping import Rules, first_rate
from .systems import Roomlogs
from .verdicts import Cores

MIN_FIRST_RATE = 1000.0  # deliveries/s: the floor of "half the previous N's maximum"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.fanout", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    p.add_argument(
        "--streams", type=parse_counts, default=[100, 1000, 5000], help="N, e.g. 100,1000"
    )
    p.add_argument("--publish", choices=("redis", "http"), default="redis", help="publish path")
    p.add_argument("--payload-bytes", type=int, default=256, help="size of one log's JSON")
    p.add_argument("--step-seconds", type=float, default=4.0, help="length of one rate step")
    p.add_argument("--start-rate", type=float, default=10000, help="first step, deliveries/s")
    p.add_argument("--growth", type=float, default=2.0, help="rate factor between steps")
    p.add_argument("--resolution", type=float, default=0.12, help="stop bisecting below this")
    p.add_argument("--max-steps", type=int, default=12, help="rate steps per N at most")
    p.add_argument(
        "--max-p99-ms", type=float, default=500, help="a sustained step's p99 latency at most"
    )
    p.add_argument(
        "--latency-deliveries",
        type=float,
        default=10000,
        help="latency phase rate, deliveries/s (logs/s = this / N)",
    )
    p.add_argument(
        "--latency-load",
        type=float,
        default=0.5,
        help="cap the latency phase at this share of the max sustained deliveries/s",
    )
    p.add_argument("--latency-seconds", type=float, default=8.0, help="latency phase length")
    p.add_argument(
        "--sampled-streams", type=int, default=16, help="streams read for latency in rate steps"
    )
    p.add_argument("--connect-concurrency", type=int, default=100, help="streams opening at once")
    p.add_argument("--settle", type=float, default=1.0, help="seconds after opening, before RSS")
    p.add_argument("--server-cpu", type=int, default=0, help="core for the service")
    p.add_argument("--client-cpu", type=int, default=1, help="core for load generator + redis")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    p.add_argument(
        "--quiet-wait", type=float, default=60, help="wait up to this long for idle cores"
    )
    p.add_argument(
        "--quiet-budget", type=float, default=180, help="total quiet waiting in a run at most"
    )
    p.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/)")
    p.add_argument(
        "--rev",
        default=None,
        help="run the service of this git revision (e.g. HEAD) instead of the work tree",
    )
    args = p.parse_args(argv)
    if args.no_pin:
        args.server_cpu = args.client_cpu = None
    args.started = utc_stamp()
    args.rev_commit = None
    return args


async def measure_all(args: argparse.Namespace, redis: PrivateRedis, workdir: Path) -> list[Run]:
    """One fresh service per N, in order; stops at the first N whose setup failed."""
    cores = [c for c in (args.server_cpu, args.client_cpu) if c is not None]
    quiet = QuietCores(cores, args.quiet_wait, args.quiet_budget)
    phases = Phases.from_args(args, connect_limit_s=10)
    rules = Rules.from_args(args, stop_at_client_limit=True)
    server = None if args.server_cpu is None else [args.server_cpu]
    runs: list[Run] = []
    previous: float | None = None
    for n in args.streams:
        case = Case(f"1x{n}", 1, n)
        cpus = None if server is None else str(args.server_cpu)
        system = Roomlogs(redis.url, workdir, cpus, n, source=args.source, publish=args.publish)
        run = new_run(system, case, "unpinned" if server is None else f"core {args.server_cpu}")
        await measure_case(
            system,
            case,
            run,
            redis=redis,
            phases=phases,
            rules=rules,
            cores=Cores(server, args.client_cpu),
            quiet=quiet,
            start_rate=first_rate(previous, args.start_rate, MIN_FIRST_RATE),
            say=say,
        )
        runs.append(run)
        if run.error:
            break
        if run.max_sustained is not None:
            previous = run.max_sustained.achieved
    return runs


async def amain(args: argparse.Namespace) -> int:
    runs: list[Run] = []
    out = args.out or RESULTS_DIR / f"fanout-{args.started}.json"
    redis = PrivateRedis(args.client_cpu)
    with tempfile.TemporaryDirectory(prefix="roomlogs-bench-") as tmp:
        try:
            choose_source(args, Path(tmp), "service")
            redis.start()
            runs = await measure_all(args, redis, Path(tmp))
            failed = next((r for r in runs if r.error), None)
            if failed is not None:
                raise SetupError(failed.error or "")
        except SetupError as exc:
            say(f"setup failed: {exc}")
            if runs:
                write_result(out, "fanout", args, runs)
            return 1
        finally:
            redis.stop()
    write_result(out, "fanout", args, runs)
    print(fanout_markdown(runs))
    print(f"\nJSON: {shown(out)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    problem = pin_load_generator(args.server_cpu, args.client_cpu)
    if problem is not None:
        say(f"setup failed: {problem}")
        return 1
    needed = max(args.streams) * 2 + 1024
    limit = raise_nofile(needed)
    if limit < needed:
        say(f"setup failed: open file limit is {limit}, {needed} needed: raise it (ulimit -n)")
        return 1
    try:
        import uvloop
    except ImportError:
        say("uvloop is not installed: the load generator runs on asyncio's own loop")
        return asyncio.run(amain(args))
    return uvloop.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
