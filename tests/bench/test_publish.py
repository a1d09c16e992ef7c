"""bench.publish's parts that need no Redis: the status scan, the pipelined connections over a
real loopback socket, the requests it builds, the minimal server's /healthz, the goals."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator

import orjson
import pytest

from bench.pipes import HttpPipe, Load, Options, Target, closed_loop, open_loop
from bench.publish import nchan_post_maker, roomlogs_post_maker
from bench.publishers import LogFactory, scan_statuses
from bench.report_publish import (
    HEALTHZ,
    NCHAN_POST,
    POST_BATCH,
    POST_ONE,
    PublisherRun,
    Report,
    goals,
    markdown,
)
from bench.systems.minimal_server import HEALTHY, StreamProtocol


def test_statuses_are_counted_across_reads() -> None:
    whole = b"HTTP/1.1 202 Accepted\r\n\r\n{}HTTP/1.1 503 Unavailable\r\n\r\nHTTP/1.1 20"
    ok, bad, tail = scan_statuses(whole)
    assert (ok, bad) == (1, [b"503"])
    ok, bad, _ = scan_statuses(tail + b"1 Created\r\n\r\n")
    assert (ok, bad) == (1, [])


def test_each_post_has_its_own_idempotency_key_and_a_json_body() -> None:
    bodies = LogFactory(256).batch(3)
    make = roomlogs_post_maker(8000, ["a", "b"], bodies)
    requests = [make() for _ in range(4)]
    keys = [re.search(rb"Idempotency-Key: (\S+)\r\n", r) for r in requests]
    assert all(keys)
    assert len({k.group(1) for k in keys if k}) == 4
    assert requests[0].startswith(b"POST /api/v1/rooms/a/logs HTTP/1.1\r\n")
    assert requests[1].startswith(b"POST /api/v1/rooms/b/logs HTTP/1.1\r\n")
    for request in requests:
        head, _, body = request.partition(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
        assert length == len(body)
        assert orjson.loads(body)["agentType"] == "bench"
    nchan = nchan_post_maker(8000, ["a"], bodies)()
    assert nchan.startswith(b"POST /pub/a HTTP/1.1\r\n")
    assert b"X-EventSource-Event: log" in nchan


class _Probe(StreamProtocol):
    """The minimal server's protocol, telling the test when its connection is gone."""

    def __init__(self, gone: list[asyncio.Future[None]]) -> None:
        super().__init__({})
        self.gone = asyncio.get_running_loop().create_future()
        gone.append(self.gone)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.gone.set_result(None)


@contextlib.asynccontextmanager
async def _healthz_server() -> AsyncIterator[int]:
    """The minimal server's request handling on a real socket (no Redis needed for /healthz);
    on exit, every connection it accepted is awaited closed."""
    loop = asyncio.get_running_loop()
    gone: list[asyncio.Future[None]] = []
    server = await loop.create_server(lambda: _Probe(gone), "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        async with asyncio.timeout(5):
            await asyncio.gather(*gone)
            await server.wait_closed()


async def test_the_minimal_server_answers_pipelined_healthz_in_order() -> None:
    async with _healthz_server() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
        async with asyncio.timeout(5):
            got = await reader.readexactly(3 * len(HEALTHY))
        assert got == HEALTHY * 3
        writer.write(b"GET /nothing HTTP/1.1\r\n\r\n")
        async with asyncio.timeout(5):
            assert (await reader.read()).startswith(b"HTTP/1.1 404")
        writer.close()
        await writer.wait_closed()


async def test_the_loops_count_every_answer_with_its_latency() -> None:
    async with _healthz_server() as port:
        await _both_loops(port)


async def _both_loops(port: int) -> None:
    own = Target(port, HttpPipe, lambda: 0.0, redis_pid=os.getpid())  # any live pid: no Redis here
    make = lambda: b"GET /healthz HTTP/1.1\r\n\r\n"  # noqa: E731
    opts = Options(conns=2, depth=4, seconds=0.3, warm=0.05)
    closed = await closed_loop(own, make, HEALTHZ, "minimal", 0, opts)
    assert closed.requests_s > 100
    assert closed.errors == 0
    assert closed.p50_ms <= closed.p99_ms
    opened = await open_loop(own, make, HEALTHZ, "minimal", 200, opts)
    assert opened.offered_s == 200
    assert opened.errors == 0
    assert 0.5 * 200 < opened.requests_s < 1.5 * 200


def _load(system: str, what: str, rate: float, per: int = 1, p99: float = 1.0) -> Load:
    return Load(what, system, per, 16, 8, 1.0, rate, p99_ms=p99)


def test_the_goals_are_the_ratios_of_issue_14() -> None:
    report = Report(
        loads=[
            _load("roomlogs", HEALTHZ, 10_000, 0),
            _load("roomlogs", POST_ONE, 8_000),
            _load("roomlogs", POST_BATCH, 2_000, 100),
            _load("nchan", NCHAN_POST, 10_000),
        ],
        latency=[_load("roomlogs", POST_ONE, 4_000, p99=3.0)],
        publisher=[
            PublisherRun("redis", 100, 8, 1.0, 90_000, 0.5, 0.3),
            PublisherRun("redis", 1, 64, 1.0, 60_000, 0.5, 0.3),
        ],
    )
    found = {g.goal: (g.value, g.met) for g in goals(report)}
    assert found["≥ 0.7x"][0] == pytest.approx(0.8)
    assert found["≥ 0.7x"][1] is True
    assert found["≥ 1x"][0] == pytest.approx(0.8)
    assert found["≥ 1x"][1] is False
    assert found["≥ 150,000"] == (200_000, True)
    assert found["< 5 ms"] == (3.0, True)
    assert found["≥ 50,000"] == (60_000, True)
    assert "| roomlogs | POST 1 log + Idempotency-Key |" in markdown(report)


def test_missing_systems_leave_the_goals_unmeasured() -> None:
    assert all(g.met is None for g in goals(Report()))
