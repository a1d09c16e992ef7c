"""Where roomlogs' memory per idle stream goes: the service under tracemalloc, N idle streams.

    .venv/bin/python -m bench.memprofile --streams 2000

It starts `python -m service serve` (the work tree, Redis broker on a private redis-server) with
tracemalloc on, opens 10 streams and closes them (warm-up), takes a snapshot, opens N idle
streams on one room, takes another, and prints the allocation sites that grew, per stream:
by line (`--group lineno`) or by the innermost frames of roomlogs/aiohttp (`traceback`). It
also prints VmRSS per stream, which includes what tracemalloc cannot see (libuv, the kernel's
share of socket memory charged to the process is not in RSS). tracemalloc's own bookkeeping
roughly doubles RSS: read the per-site bytes, not the RSS, as the cost.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import runpy
import signal
import sys
import tempfile
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Final

from ._common import ROOT

SNAPSHOT_ENV: Final = "ROOMLOGS_MEMPROFILE_DIR"


def _child() -> None:
    """In the service process: tracemalloc on, SIGUSR1 writes a snapshot, then serve."""
    out = Path(os.environ[SNAPSHOT_ENV])
    tracemalloc.start(int(os.environ.get("ROOMLOGS_MEMPROFILE_FRAMES", "25")))
    count = 0

    def dump(_signum: int, _frame: FrameType | None) -> None:
        nonlocal count
        count += 1
        tracemalloc.take_snapshot().dump(str(out / f"snap-{count}.pickle"))
        (out / f"snap-{count}.done").touch()

    signal.signal(signal.SIGUSR1, dump)
    sys.argv = ["service", "serve"]
    runpy.run_module("service", run_name="__main__", alter_sys=True)


async def _drive(args: argparse.Namespace) -> int:
    from service.auth import mint_token

    from ._common import SECRET
    from ._procs import proc_rss_kib
    from ._redis import PrivateRedis
    from .reader import Pool, Recorder
    from .systems import Roomlogs

    with tempfile.TemporaryDirectory(prefix="roomlogs-mem-") as tmp:
        work = Path(tmp)
        redis = PrivateRedis(None)
        redis.start()
        system = Roomlogs(redis.url, work, None, args.streams)
        argv = [sys.executable, "-m", "bench.memprofile", "--child"]
        system.argv = lambda: argv  # type: ignore[method-assign]
        base_env = system.env()
        system.env = lambda: {  # type: ignore[method-assign]
            **base_env,
            SNAPSHOT_ENV: tmp,
            "ROOMLOGS_MEMPROFILE_FRAMES": str(args.frames),
        }
        system.start()
        try:
            await system.wait_ready(60)
            assert system.proc is not None
            pid = system.proc.pid
            token = mint_token(SECRET, rooms=["*"], ttl=3600)
            rec = Recorder()

            def request(room: str) -> bytes:
                return system.request(room, token)

            warm = Pool(system.port, ["warm"], request, system.framing, rec)
            await warm.open(10, concurrency=10, sampled=0)
            await warm.close()
            await asyncio.sleep(0.5)

            async def snapshot(n: int) -> tracemalloc.Snapshot:
                os.kill(pid, signal.SIGUSR1)
                done = work / f"snap-{n}.done"
                for _ in range(1200):  # a file from another process: polled, 120 s at most
                    if done.exists():
                        break
                    await asyncio.sleep(0.1)
                return tracemalloc.Snapshot.load(str(work / f"snap-{n}.pickle"))

            before = await snapshot(1)
            rss0 = proc_rss_kib(pid)
            pool = Pool(system.port, ["room"], request, system.framing, rec)
            await pool.open(args.streams, concurrency=100, sampled=0)
            await asyncio.sleep(1.0)
            rss1 = proc_rss_kib(pid)
            after = await snapshot(2)
            await pool.close()
        finally:
            system.stop()
            redis.stop()
    report(before, after, args)
    print(f"\nVmRSS (with tracemalloc): {(rss1 - rss0) / args.streams:.1f} KiB per stream")
    return 0


def report(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, args: argparse.Namespace
) -> None:
    keep = [tracemalloc.Filter(False, tracemalloc.__file__)]
    stats = after.filter_traces(keep).compare_to(before.filter_traces(keep), args.group)
    grown = [s for s in stats if s.size_diff > 0]
    total = sum(s.size_diff for s in stats)
    n = args.streams
    print(f"tracemalloc: {total / n / 1024:.2f} KiB per stream in Python allocations\n")
    print("| KiB / stream | allocations / stream | where |")
    print("|---:|---:|---|")
    for s in grown[: args.top]:
        frames = list(s.traceback)
        if args.group == "traceback":
            inner = [
                f for f in frames if "/site-packages/" in f.filename or "/service/" in f.filename
            ]
            shown = " <- ".join(
                f"{_short(f.filename)}:{f.lineno}" for f in (inner or frames)[-4:][::-1]
            )
        else:
            shown = f"{_short(frames[-1].filename)}:{frames[-1].lineno}"
        print(f"| {s.size_diff / n / 1024:.2f} | {s.count_diff / n:.1f} | {shown} |")


def _short(filename: str) -> str:
    lib = f"/lib/python{sys.version_info.major}.{sys.version_info.minor}/"
    for marker in ("/site-packages/", f"{ROOT}/", lib):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.memprofile", description=__doc__)
    p.add_argument("--streams", type=int, default=2000)
    p.add_argument("--group", choices=("lineno", "traceback", "filename"), default="lineno")
    p.add_argument("--frames", type=int, default=25, help="frames kept per allocation")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child()
        return 0
    import uvloop

    return uvloop.run(_drive(args))


if __name__ == "__main__":
    sys.exit(main())
