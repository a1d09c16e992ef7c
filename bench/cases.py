"""`bench.compare`'s plan: which cases, with which systems, on which cores, from which first
rate; and the flag values it is given (counts, ROOMSxSTREAMS, cores, a stream query)."""

from __future__ import annotations

import argparse
import contextlib
import os
import urllib.parse
from collections.abc import Callable, Collection, Iterator
from typing import Final

import orjson

from service.logs import LEVELS

from ._redis import PrivateRedis
from .publishers import LogFactory
from .records import Case
from .systems import SYSTEMS, Roomlogs, System

# First offered deliveries/s when nothing smaller was measured for the system yet.
FIRST_RATE: Final = {
    "roomlogs": 40_000.0,
    "minimal": 80_000.0,
    "nchan": 40_000.0,
    "tutorial": 8_000.0,
}
MANY_ROOMS_FIRST_RATE: Final = 20_000.0  # at most, for the many-rooms case


# -- flag values ------------------------------------------------------------------------------


def parse_counts(raw: str) -> list[int]:
    values = [int(part) for part in raw.split(",") if part.strip()]
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("expected positive counts such as 100,1000,5000")
    return values


def parse_rooms(raw: str) -> tuple[int, int] | None:
    if raw in ("", "0", "none"):
        return None
    rooms, _, per_room = raw.partition("x")
    try:
        value = (int(rooms), int(per_room))
    except ValueError:
        raise argparse.ArgumentTypeError("expected ROOMSxSTREAMS, e.g. 1000x2") from None
    if min(value) < 1:
        raise argparse.ArgumentTypeError("expected ROOMSxSTREAMS, e.g. 1000x2")
    return value


def parse_cpus(raw: str) -> list[int]:
    try:
        values = sorted({int(part) for part in raw.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError("expected core numbers such as 0,2") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError("expected core numbers such as 0,2")
    return values


def systems_among(known: Collection[str]) -> Callable[[str], list[str]]:
    """The `--systems` parser of a command whose systems are `known`."""

    def parse(raw: str) -> list[str]:
        keys = [k.strip() for k in raw.split(",") if k.strip()]
        unknown = [k for k in keys if k not in known]
        if unknown or not keys:
            raise argparse.ArgumentTypeError(f"systems are among {', '.join(known)}")
        return keys

    return parse


parse_systems = systems_among(SYSTEMS)


def parse_stream_query(raw: str) -> str:
    """A query string for roomlogs' stream GET that filters (so the stream takes the hub's
    per-stream path) yet passes every log the bench publishes (so the no-loss checks hold)."""
    if raw in ("", "?"):
        return ""  # no query: the plain GET (argparse also converts the default through here)
    pairs = urllib.parse.parse_qsl(raw.removeprefix("?"), keep_blank_values=True)
    sample = orjson.loads(LogFactory(0).batch(1)[0])
    known = {"agentType", "level"}
    if not pairs or any(k not in known for k, _ in pairs):
        raise argparse.ArgumentTypeError("expected agentType=... and/or level=...")
    for key, value in pairs:
        if key == "agentType" and value != sample["agentType"]:
            raise argparse.ArgumentTypeError(
                f"the bench's logs all have agentType {sample['agentType']!r}: "
                f"agentType={value} would drop every log"
            )
        if key == "level":
            if value not in LEVELS or LEVELS.index(value) > LEVELS.index(sample["level"]):
                raise argparse.ArgumentTypeError(
                    f"the bench's logs all have level {sample['level']!r}: use level="
                    f"{'/'.join(LEVELS[1 : LEVELS.index(sample['level']) + 1])}"
                )
            if value == LEVELS[0]:
                raise argparse.ArgumentTypeError(
                    f"level={value} filters nothing (the stream stays on the shared path)"
                )
    return urllib.parse.urlencode(pairs)


# -- the plan ---------------------------------------------------------------------------------


def case_name(name: str, args: argparse.Namespace) -> str:
    """`1x1000-filtered` when roomlogs' streams carry --stream-query."""
    return f"{name}-filtered" if args.stream_query else name


def rooms_case(args: argparse.Namespace) -> str | None:
    return f"{args.rooms[0]}x{args.rooms[1]}" if args.rooms else None


def plan(args: argparse.Namespace) -> list[Case]:
    q = args.stream_query
    cases = [Case(case_name(f"1x{n}", args), 1, n, query=q) for n in args.streams]
    if args.rooms:
        rooms, per_room = args.rooms
        cases.append(Case(case_name(f"{rooms}x{per_room}", args), rooms, per_room, query=q))
    if args.idle:
        cases.append(Case(case_name("idle", args), 1, args.idle, idle=True, query=q))
    return cases


def first_rate_of(key: str, case: Case, best: dict[str, float]) -> float:
    """One room: half the system's maximum for the previous N, else its FIRST_RATE."""
    if case.rooms == 1 and not case.idle:
        return best[key] / 2 if key in best else FIRST_RATE[key]
    return min(MANY_ROOMS_FIRST_RATE, FIRST_RATE[key])


def fitted(case: Case, key: str, nofile: int) -> tuple[Case, str | None]:
    """The case as it fits the open-file limit, and a note when it had to shrink: the tutorial
    pattern holds two descriptors per stream (the client's and its Redis pub/sub)."""
    if case.idle and key == "tutorial" and 2 * case.streams + 300 > nofile:
        shrunk = Case(case.name, 1, (nofile - 300) // 2, idle=True, query=case.query)
        return shrunk, (
            f"{shrunk.streams:,} idle streams, not {case.streams:,}: two file "
            f"descriptors per stream and an open file limit of {nofile:,}"
        )
    return case, None


def workers_cores(args: argparse.Namespace) -> list[int] | None:
    """The cores of a WORKERS>1 case: --workers-cpus, else the server's and the client's."""
    if args.server_cpu is None:
        return None
    return list(args.workers_cpus or [args.server_cpu, args.client_cpu])


def server_cores(args: argparse.Namespace, case: Case) -> list[int] | None:
    if args.server_cpu is None:
        return None
    return [args.server_cpu] if case.workers == 1 else workers_cores(args)


def pinning(args: argparse.Namespace, case: Case) -> str:
    """Where the system's processes ran, in words."""
    cores = workers_cores(args)
    if cores is None:
        return "unpinned"
    if case.workers == 1:
        return f"core {args.server_cpu}"
    names = "+".join(map(str, cores))
    shared = args.client_cpu in cores
    if args.workers_pin == "split":
        text = f"one worker per core ({names})"
    elif args.workers_pin == "none" and shared:
        return f"nothing pinned: workers, load generator and redis on cores {names}"
    else:
        text = f"cores {names}, placed by the scheduler"
    return text + (f", core {args.client_cpu} shared with the load generator" if shared else "")


@contextlib.contextmanager
def unpinned_client(args: argparse.Namespace, redis: PrivateRedis, case: Case) -> Iterator[None]:
    """`--workers-pin none`: the load generator (this thread) and redis-server may run on
    both cores for a WORKERS>1 case, and go back to the client core after it."""
    cores = workers_cores(args)
    if case.workers == 1 or args.workers_pin != "none" or cores is None:
        yield
        return
    both = set(cores) | {args.client_cpu}
    os.sched_setaffinity(0, both)
    os.sched_setaffinity(redis.pid, both)
    try:
        yield
    finally:
        os.sched_setaffinity(0, {args.client_cpu})
        with contextlib.suppress(OSError):
            os.sched_setaffinity(redis.pid, {args.client_cpu})


def make_system(key: str, case: Case, args: argparse.Namespace, redis_url: str) -> System:
    cpus = None if args.server_cpu is None else str(args.server_cpu)
    if case.workers > 1:
        # Both cores for the workers (the load generator and Redis stay on theirs): `float`
        # lets the scheduler place each worker, `split` pins worker i to one core each.
        cores = workers_cores(args)
        cpus = None if cores is None else ",".join(map(str, cores))
        system = Roomlogs(
            redis_url,
            args.workdir,
            cpus,
            case.streams,
            workers=case.workers,
            source=args.source,
            query=case.query,
        )
        if cores is not None and args.workers_pin == "split":
            system.worker_cpus = [{cores[i % len(cores)]} for i in range(case.workers)]
        return system
    if key == "roomlogs":
        return Roomlogs(
            redis_url, args.workdir, cpus, case.streams, source=args.source, query=case.query
        )
    return SYSTEMS[key](redis_url, args.workdir, cpus, case.streams)
