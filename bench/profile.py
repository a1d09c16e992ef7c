"""A py-spy profile of a system under a fixed load, with the hot functions summarised.

    .venv/bin/python -m bench.profile --case 1x1000 --deliveries 20000 --seconds 10
    .venv/bin/python -m bench.profile --case 1000x2 --deliveries 30000 --native

It starts a private redis-server and the system (roomlogs by default) pinned to core 0, opens the
case's streams, then publishes at `--deliveries` deliveries/s for `--seconds` while `py-spy
record` (on core 1, with the load generator) samples the server. It writes the collapsed stacks
to bench/results/profile-<system>-<case>-<timestamp>.txt (open them in speedscope or inferno)
and prints the functions with the most samples, on their own (self) and with what they call
(total). `--native` adds C frames (uvloop, orjson, the kernel calls' user-side stubs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from service.auth import mint_token

from ._common import RESULTS_DIR, ROOT, SECRET, shown
from ._redis import PrivateRedis
from .cases import parse_rooms
from .publishers import LogFactory, publish_at
from .reader import Pool, Recorder
from .systems import SYSTEMS


def summarise(path: Path, top: int) -> str:
    """Self and total samples per function from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = [_short(f) for f in stack.split(";")]
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    lines = [f"{samples} samples", "", "| self % | total % | function |", "|---:|---:|---|"]
    for frame, count in own.most_common(top):
        lines.append(
            f"| {100 * count / samples:.1f} | {100 * total[frame] / samples:.1f} | {frame} |"
        )
    lines += ["", "| total % | function (inclusive, top) |", "|---:|---|"]
    for frame, count in total.most_common(top + 10):
        lines.append(f"| {100 * count / samples:.1f} | {frame} |")
    return "\n".join(lines)


def _short(frame: str) -> str:
    # py-spy raw frames: "function (path/to/file.py:line)"
    for marker in ("site-packages/", f"{ROOT}/", "python3.11/"):
        frame = frame.replace(marker, "").replace("/usr/lib/" + marker, "")
    if "(" in frame:
        name, _, where = frame.partition(" (")
        where = where.rstrip(")")
        file, _, _line = where.rpartition(":")
        return f"{name} ({file.split('/.venv/lib/')[-1]})"
    return frame


async def run(args: argparse.Namespace) -> int:
    rooms_n, per_room = args.case
    out_dir = RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = out_dir / f"profile-{args.system}-{rooms_n}x{per_room}-{stamp}.txt"
    workdir = out_dir / f"profile-{stamp}-logs"
    workdir.mkdir(parents=True, exist_ok=True)
    redis = PrivateRedis(1)
    redis.start()
    system = SYSTEMS[args.system](redis.url, workdir, "0", rooms_n * per_room)
    system.start()
    try:
        await system.wait_ready()
        assert system.proc is not None
        rooms = [f"prof-{i}" for i in range(rooms_n)]
        token = mint_token(SECRET, rooms=["*"], ttl=3600)
        rec = Recorder()

        def request(room: str) -> bytes:
            return system.request(room, token)

        pool = Pool(system.port, rooms, request, system.framing, rec)
        await pool.open(per_room, concurrency=100, sampled=0)
        feed = system.feed(rooms)
        logs = LogFactory(256)
        rate = args.deliveries / per_room
        await publish_at(feed, logs, rooms_n, rate, max(rooms_n, int(rate)), 2.0)  # warm
        spy = _py_spy()
        assert spy is not None  # checked in main()
        argv = [
            "taskset", "-c", "1", spy, "record", "--pid", str(system.proc.pid),
            "--rate", str(args.rate), "--duration", str(int(args.seconds)),
            "--format", "raw", "--output", str(out),
        ]  # fmt: skip
        if args.native:
            argv.append("--native")
        spy_proc = await asyncio.create_subprocess_exec(
            *argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        await asyncio.sleep(0.5)
        total0 = rec.total
        t0 = time.monotonic()
        cpu0 = system.cpu_seconds()
        sent = await publish_at(
            feed, logs, rooms_n, rate, int(rate * args.seconds), args.seconds * 2
        )
        await asyncio.sleep(0.5)
        cpu = system.cpu_seconds() - cpu0
        delivered = rec.total - total0
        wall = time.monotonic() - t0
        async with asyncio.timeout(args.seconds + 60):
            _, err = await spy_proc.communicate()
        if spy_proc.returncode != 0:
            print(err.decode(errors="replace")[-2000:], file=sys.stderr)
        await feed.close()
        await pool.close()
    finally:
        system.stop()
        redis.stop()
    print(
        f"{system.label}, {rooms_n} x {per_room}: {sent.sent} logs, {delivered:,} deliveries in "
        f"{wall:.1f}s; server CPU {cpu / wall:.0%} of a core, "
        f"{cpu * 1e6 / max(delivered, 1):.2f} µs per delivery\n"
    )
    if out.exists():
        print(summarise(out, args.top))
        print(f"\ncollapsed stacks: {shown(out)}")
    return 0


@contextlib.asynccontextmanager
async def spying(pid: int, out: Path, cpu: int | None, rate: int = 250) -> AsyncIterator[None]:
    """py-spy recording `pid` (on core `cpu`, the load generator's) while the body runs, its
    collapsed stacks written to `out` and summarised on the way out; nothing without py-spy."""
    spy = _py_spy()
    if spy is None:
        yield
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [spy, "record", "--pid", str(pid), "--rate", str(rate),
            "--format", "raw", "--output", str(out)]  # fmt: skip
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    await asyncio.sleep(1.0)  # py-spy attaching: no event tells when it samples
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            async with asyncio.timeout(30):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()
        _print_summary(out)


def _print_summary(out: Path) -> None:
    if out.exists():
        print(summarise(out, 25), flush=True)
        print(f"  collapsed stacks: {shown(out)}", flush=True)


def _py_spy() -> str | None:
    """py-spy next to this interpreter (the venv's), else on the PATH."""
    return shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    p.add_argument("--system", choices=sorted(SYSTEMS), default="roomlogs")
    p.add_argument("--case", type=parse_rooms, default=(1, 1000), help="ROOMSxSTREAMS, e.g. 1000x2")
    p.add_argument("--deliveries", type=float, default=20000, help="deliveries/s")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples/s")
    p.add_argument("--native", action="store_true", help="include C frames")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)
    if args.case is None:
        p.error("--case needs ROOMSxSTREAMS")
    if _py_spy() is None:  # before starting Redis and the system, not after
        print("py-spy not found: .venv/bin/pip install py-spy", file=sys.stderr)
        return 1
    os.sched_setaffinity(0, {1})
    import uvloop

    return uvloop.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
