"""The load generator of `bench.publish`: pipelined keep-alive connections, no client library.

Each connection (`Pipe`) keeps requests in flight on one socket. HTTP/1.1 and RESP answer in
order, so the send times wait in a FIFO and every answer's latency is known; HTTP answers are
counted by their status lines (`publishers.scan_statuses`), Redis replies read by hiredis.
`closed_loop` keeps `conns` x `depth` requests in flight (every answer sends the next one): the
max rate. `open_loop` sends a fixed rate every millisecond whatever the answers: the latency at
that rate. Both meter the server's, the load generator's and Redis' CPU (`UsageMeter`).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import hiredis

from ._common import HOST
from .metering import Usage, UsageMeter
from .publishers import scan_statuses

Make = Callable[[], bytes]  # the next request's bytes


@dataclass(frozen=True)
class Options:
    """How one measurement runs."""

    conns: int
    depth: int
    seconds: float
    warm: float


class Tally:
    """What every connection of one measurement reports into."""

    __slots__ = ("answered", "bad", "latencies", "recording")

    def __init__(self) -> None:
        self.answered = 0
        self.bad: list[bytes] = []  # the statuses (or Redis errors) that were not a success
        self.latencies = array("d")  # seconds, send → answer, while recording
        self.recording = False


class Pipe(asyncio.Protocol):
    """One keep-alive connection with requests pipelined on it. HTTP/1.1 and RESP answer in
    order, so the send times wait in a FIFO and each answer's latency is known. Closed loop
    (`refill`): every answer sends the next request, `depth` stay in flight. Open loop: a
    ticker calls `fire(n)`."""

    def __init__(self, make: Make, tally: Tally, depth: int, refill: bool) -> None:
        self.make = make
        self.tally = tally
        self.depth = depth
        self.refill = refill
        self.sent: collections.deque[float] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.error: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self.refill:
            self.fire(self.depth)

    def connection_lost(self, exc: Exception | None) -> None:
        self.error = self.error or f"connection closed: {exc!r}"

    def fire(self, count: int) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        make = self.make
        self.sent.extend(itertools.repeat(time.perf_counter(), count))
        self.transport.write(b"".join([make() for _ in range(count)]))

    def answers(self, ok: int, bad: list[bytes]) -> None:
        now = time.perf_counter()
        tally = self.tally
        count = ok + len(bad)
        if bad:
            tally.bad += bad[:10]
        sent = self.sent
        if tally.recording:
            append = tally.latencies.append
            for _ in range(min(count, len(sent))):
                append(now - sent.popleft())
        else:
            for _ in range(min(count, len(sent))):
                sent.popleft()
        tally.answered += count
        if self.refill and count:
            self.fire(count)

    @property
    def in_flight(self) -> int:
        return len(self.sent)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class HttpPipe(Pipe):
    """Answers counted by their status lines (`scan_statuses`)."""

    def __init__(self, make: Make, tally: Tally, depth: int, refill: bool) -> None:
        super().__init__(make, tally, depth, refill)
        self.tail = b""

    def data_received(self, data: bytes) -> None:
        ok, bad, self.tail = scan_statuses(self.tail + data)
        self.answers(ok, bad)


class RespPipe(Pipe):
    """Redis replies, read by hiredis."""

    def __init__(self, make: Make, tally: Tally, depth: int, refill: bool) -> None:
        super().__init__(make, tally, depth, refill)
        self.reader = hiredis.Reader()

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        ok = 0
        bad: list[bytes] = []
        while (reply := self.reader.gets()) is not False:
            if isinstance(reply, Exception):
                bad.append(str(reply).encode()[:80])
            else:
                ok += 1
        self.answers(ok, bad)


@dataclass
class Load:
    """One measured load: what was asked, how fast it was answered, what it cost."""

    what: str
    system: str
    per_request: int  # logs a request carries (0: not a publish)
    conns: int
    depth: int  # requests in flight per connection (closed loop), 0: open loop
    seconds: float
    requests_s: float
    offered_s: float | None = None  # open loop: the rate asked
    server_core: float = float("nan")
    server_us: float = float("nan")  # server CPU per request
    loadgen_core: float = float("nan")
    redis_core: float = float("nan")
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    p999_ms: float = float("nan")
    max_ms: float = float("nan")
    errors: int = 0
    first_error: str = ""

    @property
    def logs_s(self) -> float:
        return self.requests_s * self.per_request


@dataclass
class Target:
    """Where a load is sent and how its cost is read."""

    port: int
    kind: type[Pipe]
    cpu: Callable[[], float]  # the server's CPU seconds (its process tree, or redis)
    redis_pid: int


async def _open(target: Target, make: Make, conns: int, depth: int, tally: Tally) -> list[Pipe]:
    loop = asyncio.get_running_loop()
    pipes: list[Pipe] = []
    kind = target.kind

    def factory() -> Pipe:
        return kind(make, tally, depth, depth > 0)

    async with asyncio.timeout(10):
        for _ in range(conns):
            _, pipe = await loop.create_connection(factory, HOST, target.port)
            pipes.append(pipe)
    return pipes


async def _finish(pipes: Sequence[Pipe], limit_s: float = 10) -> None:
    """Stop refilling, wait (bounded) for what is in flight, close."""
    for pipe in pipes:
        pipe.refill = False
    for _ in range(int(limit_s / 0.01)):  # a bounded poll of every connection
        if not any(p.in_flight and p.error is None for p in pipes):
            break
        await asyncio.sleep(0.01)
    for pipe in pipes:
        pipe.close()


def _fill(load: Load, tally: Tally, usage: Usage, answered: int) -> Load:
    load.server_core = usage.server
    load.server_us = usage.server_seconds / max(answered, 1) * 1e6
    load.loadgen_core = usage.loadgen
    load.redis_core = usage.redis
    lat = tally.latencies
    if lat:
        ordered = sorted(lat)
        n = len(ordered)
        load.p50_ms = ordered[n // 2] * 1e3
        load.p99_ms = ordered[min(n - 1, int(0.99 * n))] * 1e3
        load.p999_ms = ordered[min(n - 1, int(0.999 * n))] * 1e3
        load.max_ms = ordered[-1] * 1e3
    load.errors = len(tally.bad)
    load.first_error = tally.bad[0].decode("latin-1") if tally.bad else ""
    return load


async def closed_loop(
    target: Target, make: Make, what: str, system: str, per_request: int, opts: Options
) -> Load:
    """`conns` x `depth` requests in flight for `opts.seconds` after a warm-up: the max rate."""
    tally = Tally()
    pipes = await _open(target, make, opts.conns, opts.depth, tally)
    try:
        await asyncio.sleep(opts.warm)
        meter = UsageMeter(target.cpu, target.redis_pid)
        meter.start()
        start = tally.answered
        tally.recording = True
        await asyncio.sleep(opts.seconds)
        tally.recording = False
        answered = tally.answered - start
        usage = meter.stop()
    finally:
        await _finish(pipes)
    load = Load(
        what, system, per_request, opts.conns, opts.depth, usage.wall, answered / usage.wall
    )
    return _fill(load, tally, usage, answered)


async def open_loop(
    target: Target, make: Make, what: str, system: str, rate: float, opts: Options
) -> Load:
    """`rate` requests/s spread over the connections, sent every millisecond whatever the
    answers: the latency at that rate (a request waits behind the others in flight)."""
    tally = Tally()
    pipes = await _open(target, make, opts.conns, 0, tally)
    loop = asyncio.get_running_loop()
    try:
        meter = UsageMeter(target.cpu, target.redis_pid)
        meter.start()
        tally.recording = True
        t0 = loop.time()
        sent = 0
        turn = 0
        while (elapsed := loop.time() - t0) < opts.seconds:
            due = int(elapsed * rate) + 1
            for _ in range(due - sent):
                pipes[turn % len(pipes)].fire(1)
                turn += 1
            sent = max(sent, due)
            await asyncio.sleep(0.001)
        await _finish(pipes)
        tally.recording = False
        usage = meter.stop()
    finally:
        for pipe in pipes:
            pipe.close()
    load = Load(what, system, 1, opts.conns, 0, usage.wall, tally.answered / usage.wall, rate)
    return _fill(load, tally, usage, tally.answered)
