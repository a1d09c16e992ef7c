"""Reconnecting at the speed of the fan-out (issue 14): a reconnect storm, side by side.

    .venv/bin/python -m bench.storm            # 10,000 streams, 3 storms per system
    .venv/bin/python -m bench.storm --quick    # 10,000 streams, 1 storm per system: ~2 minutes

Every server runs pinned to core 0 (`taskset`), fresh; the load generator (this process,
uvloop, one small protocol object per stream) and the private redis-server share core 1, as in
`bench.compare`. For each system in turn:

1. warm-up (10 streams, 3 logs, the framing check of `bench.compare`), RSS;
2. `--streams` streams opened over `--rooms` rooms, each with a token of its own (roomlogs),
   then RSS again: the memory per idle stream, as `bench.compare`'s idle case reads it;
3. one log, then `--behind` more: every stream keeps the `id:` of the last log it got, so it
   knows one position `--behind` logs back and the newest;
4. the storm: every stream is aborted at once (an RST, as when a gateway's network blips), the
   server's side is let go, and all of them reconnect, `--storm-concurrency` handshakes in
   flight, each with `Last-Event-ID`: half at the newest log (nothing to replay), half
   `--behind` logs back. A handshake is done when the stream said it is subscribed and got
   every log it missed. Handshakes/s = streams / (last done - storm start): auth (roomlogs
   verifies each stream's token), resume (its `XRANGE`) and registration, on one core;
5. checks: every resumed stream got exactly what it missed (no loss, no duplicate), then one
   more log reaches every stream (all live).

The minimal server has no tokens and no history: its streams reconnect without resuming (the
floor of a handshake in Python). nchan resumes from its own memory store (its `id:`s,
`<time>:<tag>`, given back as `Last-Event-ID`; messages kept 1 h) and checks no token; its
worker's crashes are read from its error log into the notes. Steps 3-5 run `--rounds` times
on the same streams. It prints Markdown tables with issue 14's goals and writes
bench/results/storm-<UTC timestamp>.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import secrets
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

from service.auth import mint_token

from ._common import HOST, RESULTS_DIR, SECRET, SetupError, say, shown
from ._procs import established_peers, pin_load_generator, raise_nofile
from ._redis import PrivateRedis, flush_redis
from .cases import systems_among
from .metering import QuietCores, UsageMeter
from .profile import spying
from .publishers import Feed, LogFactory
from .reader import KeepingStream, Pool, Recorder, check_framing
from .report_storm import StormRun, SystemRun, markdown
from .results import utc_stamp, write_result
from .resuming import ResumingStream, with_last_event_id
from .systems import Minimal, Nchan, Roomlogs, System, without_missing_nchan

SYSTEM_KEYS: Final = ("roomlogs", "minimal", "nchan")
RESUMES: Final = frozenset({"roomlogs", "nchan"})  # the systems that take Last-Event-ID
# How long nchan keeps a message (`nchan_message_timeout`): its own default, 1 h. A storm
# starting after the buffer emptied would test nchan 1.3.6's crash on an unknown id, not a
# resume (roomlogs keeps its history a day after the last publish).
NCHAN_HOLD_S: Final = 3600


@dataclass
class Options:
    streams: int
    rooms: int
    behind: int
    rounds: int
    connect_concurrency: int
    storm_concurrency: int
    payload_bytes: int
    limit_s: float  # one storm at most


class StormBench:
    def __init__(self, args: argparse.Namespace, redis: PrivateRedis) -> None:
        self.args = args
        self.redis = redis
        self.opts = Options(
            args.streams, args.rooms, args.behind, args.rounds, args.connect_concurrency,
            args.storm_concurrency, args.payload_bytes, args.storm_limit,
        )  # fmt: skip
        self.quiet = QuietCores(
            [c for c in (args.server_cpu, args.client_cpu) if c is not None], 20, 120
        )
        self.recorder = Recorder()

    # -- one system ------------------------------------------------------------------------

    async def system(self, system: System, run: SystemRun) -> None:
        """One system's opening and storms, into `run` (kept when a later step fails)."""
        opts = self.opts
        tag = secrets.token_hex(3)
        rooms = [f"bench-storm-{tag}-{i}" for i in range(opts.rooms)]
        warm_room = f"bench-warm-{tag}"
        feed = system.feed([*rooms, warm_room])
        logs = LogFactory(opts.payload_bytes)
        try:
            await self.quiet.wait(say)
            system.start()
            await system.wait_ready()
            await self._warm(system, feed, logs, warm_room, len(rooms))
            await asyncio.sleep(0.5)
            run.rss_before_kib = system.rss_kib()
            # A token of its own per stream (what a reconnecting client sends again).
            requests = [
                system.request(
                    rooms[i % len(rooms)],
                    mint_token(SECRET, rooms=[rooms[i % len(rooms)]], ttl=6 * 3600, sub=f"c{i}"),
                )
                for i in range(opts.streams)
            ]
            t0 = time.monotonic()
            streams, _ = await self._connect(
                system, requests, [None] * opts.streams, [0] * opts.streams,
                opts.connect_concurrency,
            )  # fmt: skip
            run.connect_s = time.monotonic() - t0
            gc.collect()
            gc.freeze()
            await asyncio.sleep(1.0)
            run.rss_after_kib = system.rss_kib()
            run.rss_per_stream_kib = (run.rss_after_kib - run.rss_before_kib) / opts.streams
            say(
                f"  {opts.streams:,} streams opened in {run.connect_s:.1f}s, "
                f"{run.rss_per_stream_kib:.2f} KiB/stream"
            )
            for number in range(opts.rounds):
                storm, streams = await self._storm(system, feed, logs, requests, streams, run)
                storm.round = number + 1
                run.storms.append(storm)
                say("  " + storm.line())
            for s in streams:
                s.close()
        finally:
            gc.unfreeze()
            if isinstance(system, Nchan):
                crashes, assertion = system.worker_crashes()
                if crashes:
                    run.notes.append(
                        f"nchan's worker crashed {crashes} times ({assertion or 'no assertion'}"
                        f"; {shown(system.error_log)})"
                    )
            await feed.close()
            left = system.stop()
            if left:
                run.notes.append(f"leftover processes {left} stopped")
            await flush_redis(self.redis.url)

    async def _warm(
        self, system: System, feed: Feed, logs: LogFactory, warm_room: str, index: int
    ) -> None:
        """`bench.compare`'s warm-up: a stream and a delivery run once before RSS is read,
        and the byte scan is checked against `service.sse` on those streams."""
        token = mint_token(SECRET, rooms=["*"], ttl=6 * 3600, sub="bench")
        warm = Pool(system.port, [warm_room], lambda r: system.request(r, token),
                    system.framing, self.recorder)  # fmt: skip
        await warm.open(10, concurrency=10, sampled=0, keep=True)
        warm.rebase()
        for _ in range(3):
            await feed.send([(index, logs.batch(1)[0])])
        await warm.wait_all([3], time.monotonic() + 5)
        for stream in warm.streams:
            assert isinstance(stream, KeepingStream)
            check_framing(stream, system.key)
        await warm.close()

    async def _connect(
        self,
        system: System,
        requests: Sequence[bytes],
        resume: Sequence[bytes | None],
        wants: Sequence[int],
        concurrency: int,
        limit_s: float = 30,
    ) -> tuple[list[ResumingStream], Counter[str]]:
        """Open one stream per request (`resume`: its Last-Event-ID), `concurrency` at a time,
        retried like an EventSource (0.2 s, 3 attempts); the streams once all are done, and
        why attempts were retried (how many times each)."""
        loop = asyncio.get_running_loop()
        sem = asyncio.Semaphore(concurrency)
        rooms = self.opts.rooms
        done = 0
        all_done = loop.create_future()
        retries: Counter[str] = Counter()
        errors: list[str] = []
        out: list[ResumingStream | None] = [None] * len(requests)

        def on_done() -> None:
            nonlocal done
            done += 1
            if done == len(requests) and not all_done.done():
                all_done.set_result(None)

        async def one(i: int) -> None:
            request = with_last_event_id(requests[i], resume[i])
            async with sem:
                first = time.perf_counter()  # a stream's handshake time includes its retries
                for attempt in range(3):
                    proto: ResumingStream | None = None
                    try:
                        async with asyncio.timeout(limit_s):
                            _, proto = await loop.create_connection(
                                lambda: ResumingStream(self.recorder, system.framing,
                                                       i % rooms, wants[i], on_done),
                                HOST, system.port,
                            )  # fmt: skip
                            proto.started = first
                            assert proto.transport is not None
                            proto.transport.write(request)
                            await asyncio.wait(
                                [proto.connected, proto.lost], return_when=asyncio.FIRST_COMPLETED
                            )
                    except (OSError, TimeoutError) as exc:
                        why = f"{type(exc).__name__}: {exc}"
                        if proto is not None:  # connected, never subscribed: not left open
                            proto.close()
                    else:
                        if proto.error is None:
                            out[i] = proto
                            return
                        why = proto.error
                    if attempt == 2:
                        errors.append(why)
                        if not all_done.done():
                            all_done.set_result(None)
                        return
                    retries[why.split(":", 1)[0][:60]] += 1
                    await asyncio.sleep(0.2)

        tasks = [asyncio.create_task(one(i)) for i in range(len(requests))]
        try:
            async with asyncio.timeout(limit_s * 2):
                await all_done
                await asyncio.gather(*tasks)
        except TimeoutError:
            errors.append(f"not every handshake done within {limit_s * 2:g} s ({done} done)")
        finally:
            for task in tasks:
                task.cancel()
        if errors:
            for s in out:
                if s is not None:
                    s.close()
            raise SetupError(f"{len(errors)} of {len(requests)} streams failed: {errors[0]}")
        return [s for s in out if s is not None], retries

    async def _publish(
        self, feed: Feed, logs: LogFactory, streams: Sequence[ResumingStream], count: int
    ) -> None:
        """`count` logs to every room, then wait until every stream has them."""
        rooms = self.opts.rooms
        for s in streams:
            s.base = s.received
        for _ in range(count):
            await feed.send([(r, log) for r, log in enumerate(logs.batch(rooms))])
        deadline = time.monotonic() + 15
        pending = list(streams)
        while pending and time.monotonic() < deadline:
            pending = [s for s in pending if s.received - s.base < count and not s.lost.done()]
            if pending:
                await asyncio.sleep(0.02)
        if pending:
            raise SetupError(f"{len(pending)} streams did not get {count} logs within 15 s")

    async def _storm(
        self,
        system: System,
        feed: Feed,
        logs: LogFactory,
        requests: Sequence[bytes],
        streams: list[ResumingStream],
        run: SystemRun,
    ) -> tuple[StormRun, list[ResumingStream]]:
        opts = self.opts
        resumes = system.key in RESUMES
        # Quiet cores first, then the logs, so the storm starts right after them.
        await self.quiet.wait(say)
        await self._publish(feed, logs, streams, 1)
        older = [s.last_id for s in streams]
        await self._publish(feed, logs, streams, opts.behind)
        newest = [s.last_id for s in streams]
        if resumes and (None in older or None in newest):
            raise SetupError(f"{system.key}: a stream saw no `id:` line")
        behind = [resumes and i % 2 == 0 for i in range(len(streams))]
        resume = [
            None if not resumes else (older[i] if behind[i] else newest[i])
            for i in range(len(streams))
        ]
        wants = [opts.behind if b else 0 for b in behind]
        # The storm: every connection reset at once, the server lets go of them, all return.
        ports = {s.local_port for s in streams}
        for s in streams:
            s.close()
        let_go_at = time.monotonic()
        held = await self._let_go(system.port, ports)
        say(f"  the server let go of {len(ports) - held:,} of {len(ports):,} aborted streams "
            f"in {time.monotonic() - let_go_at:.1f}s")  # fmt: skip
        if held:
            run.notes.append(f"{held} aborted connections still held by the server at the storm")
        async with self._spy(system):
            meter = UsageMeter(system.cpu_seconds, self.redis.pid)
            meter.start()
            t0 = time.perf_counter()
            fresh, retries = await self._connect(
                system, requests, resume, wants, opts.storm_concurrency, opts.limit_s
            )
            last = max(s.done_at for s in fresh)
            usage = meter.stop()
        wall = last - t0
        per_stream = sorted((s.done_at - s.started) * 1e3 for s in fresh)
        await asyncio.sleep(0.3)  # a duplicate sent after the handshake shows up here
        exact = sum(1 for s in fresh if s.received == s.want)
        live = await self._live(feed, logs, fresh)
        storm = StormRun(
            streams=len(fresh),
            behind=sum(behind),
            seconds=wall,
            handshakes_s=len(fresh) / wall,
            p50_ms=per_stream[len(per_stream) // 2],
            p99_ms=per_stream[min(len(per_stream) - 1, int(0.99 * len(per_stream)))],
            server_core=usage.server,
            server_us=usage.server_seconds / len(fresh) * 1e6,
            loadgen_core=usage.loadgen,
            redis_core=usage.redis,
            exact=exact,
            live=live,
            retries=sum(retries.values()),
            retry_reasons=dict(retries),
        )
        return storm, fresh

    def _spy(self, system: System) -> contextlib.AbstractAsyncContextManager[None]:
        """`--profile`: py-spy recording roomlogs through the storm (on the load generator's
        core), as `bench.profile` runs it."""
        if not self.args.profile or system.key != "roomlogs" or system.proc is None:
            return contextlib.nullcontext()
        return spying(system.proc.pid, self.args.profile_out, self.args.client_cpu)

    async def _live(self, feed: Feed, logs: LogFactory, streams: Sequence[ResumingStream]) -> int:
        """One more log per room: how many streams get it (all live after the storm)."""
        with contextlib.suppress(SetupError):
            await self._publish(feed, logs, streams, 1)
        return sum(1 for s in streams if s.received - s.base >= 1 and not s.lost.done())

    async def _let_go(self, port: int, ports: set[int], limit_s: float = 20) -> int:
        """Wait, `limit_s` at most, until the server holds none of the aborted connections
        (`ports`: their client side), and return how many it still holds. Only those: nchan's
        publisher keeps a connection of its own to the same port. The limit is on the clock,
        since one read of /proc/net/tcp with 10,000 closing sockets can take 0.1 s or more."""
        deadline = time.monotonic() + limit_s
        while True:  # /proc polled: no event to await
            held = len(established_peers(port) & ports)
            if not held or time.monotonic() >= deadline:
                return held
            await asyncio.sleep(0.05)

    async def all(self) -> list[SystemRun]:
        args = self.args
        cpus = None if args.server_cpu is None else str(args.server_cpu)
        runs: list[SystemRun] = []
        for key in args.systems:
            say(key)
            system: System
            if key == "roomlogs":
                system = Roomlogs(self.redis.url, args.workdir, cpus, args.streams)
            elif key == "minimal":
                system = Minimal(self.redis.url, args.workdir, cpus, args.streams)
            else:
                system = Nchan(self.redis.url, args.workdir, cpus, args.streams, NCHAN_HOLD_S)
            run = SystemRun(key, system.label, args.streams, key in RESUMES, key == "roomlogs")
            runs.append(run)
            try:
                await self.system(system, run)
            except SetupError as exc:
                say(f"  {key} failed: {exc}")
                run.notes.insert(0, f"failed: {exc}")
        return runs


# -- the command --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.storm", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    p.add_argument("--quick", action="store_true", help="one storm per system: ~2 minutes")
    p.add_argument(
        "--systems", type=systems_among(SYSTEM_KEYS), default=list(SYSTEM_KEYS),
        help="comma-separated, among " + ",".join(SYSTEM_KEYS),
    )  # fmt: skip
    p.add_argument("--streams", type=int, default=10000, help="streams reconnecting at once")
    p.add_argument("--rooms", type=int, default=10, help="rooms the streams are spread over")
    p.add_argument("--behind", type=int, default=5, help="logs the resumed half missed")
    p.add_argument("--rounds", type=int, default=None, help="storms per system (3; quick 1)")
    p.add_argument("--connect-concurrency", type=int, default=100, help="first opening")
    p.add_argument(
        "--storm-concurrency", type=int, default=128,
        help="handshakes in flight in the storm (128: roomlogs' listen backlog, aiohttp's "
        "default; beyond it dropped SYNs wait for the kernel's 1 s retransmit)",
    )  # fmt: skip
    p.add_argument("--storm-limit", type=float, default=30, help="one handshake at most, s")
    p.add_argument("--payload-bytes", type=int, default=256, help="size of one log's JSON")
    p.add_argument("--server-cpu", type=int, default=0, help="core for the servers")
    p.add_argument("--client-cpu", type=int, default=1, help="core for load generator + redis")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/)")
    p.add_argument(
        "--profile", action="store_true",
        help="py-spy roomlogs through its storms (bench/results/storm-<timestamp>-py-spy.txt)",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.no_pin:
        args.server_cpu = args.client_cpu = None
    args.started = utc_stamp()
    return args


async def amain(args: argparse.Namespace) -> int:
    out = args.out or RESULTS_DIR / f"storm-{args.started}.json"
    args.profile_out = out.with_name(out.stem + "-py-spy.txt")
    args.workdir = out.with_suffix("").with_name(out.stem + "-logs")
    args.workdir.mkdir(parents=True, exist_ok=True)
    redis = PrivateRedis(args.client_cpu, extra=["--maxclients", str(args.streams + 2000)])
    started = time.monotonic()
    runs: list[SystemRun] = []
    try:
        redis.start()
        runs = await StormBench(args, redis).all()
    except SetupError as exc:
        say(f"setup failed: {exc}")
        return 1
    finally:
        redis.stop()
        write_result(out, "storm", args, [], systems=[asdict(r) for r in runs])
    print(markdown(runs))
    print(f"\nJSON: {shown(out)}")
    say(f"took {(time.monotonic() - started) / 60:.1f} min")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    problem = pin_load_generator(args.server_cpu, args.client_cpu)
    if problem is not None:
        say(f"setup failed: {problem}")
        return 1
    needed = args.streams * 2 + 4096
    if raise_nofile(needed) < args.streams + 1024:
        say(f"setup failed: the open file limit is below {needed}")
        return 1
    args.systems = without_missing_nchan(args.systems)
    import uvloop

    return uvloop.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
