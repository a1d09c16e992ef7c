"""Production process model: SIGTERM drains gracefully; WORKERS share the port and metrics."""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp

from tests.support.aio import poll_until
from tests.support.factories import StartService, auth, sample_log
from tests.support.servers import RedisServer
from tests.support.sse import SSEStream


async def _metric(http: aiohttp.ClientSession, url: str, name: str) -> float:
    async with http.get(url + "/metrics") as r:
        text = await r.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_sigterm_drains_in_waves_refuses_new_streams_and_exits_0(
    service: StartService, redis_server: RedisServer, room: str
) -> None:
    srv = await service(REDIS_URL=redis_server.url, SHUTDOWN_TIMEOUT="2", RETRY_MS="1000")
    url = f"{srv.url}/api/v1/rooms/{room}/logs"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        responses = [await http.get(url, headers=auth()) for _ in range(20)]
        streams = [SSEStream(r) for r in responses]
        for s in streams:
            assert (await s.next()).event == "connected"

        async def closed_at(s: SSEStream) -> tuple[float, dict[str, object], int | None]:
            ev = await s.next(timeout=10)
            return time.monotonic(), ev.json(), ev.retry

        waiting = [asyncio.create_task(closed_at(s)) for s in streams]
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGTERM)

        async def not_ready() -> bool:
            async with http.get(srv.url + "/readyz") as r:
                return r.status == 503 and (await r.json())["reason"] == "draining"

        await poll_until(not_ready, timeout=5)
        async with http.get(url, headers=auth()) as refused:
            assert refused.status == 200
            ev = await SSEStream(refused).next()
            assert ev.event == "unavailable"
            assert ev.json()["reason"] == "draining"

        closes = await asyncio.gather(*waiting)
        for r in responses:
            r.close()
    for _, body, retry in closes:
        assert body["reason"] == "shutdown"
        assert retry is not None
        assert 1000 <= retry <= 2000
    moments = sorted(t for t, _, _ in closes)
    assert moments[-1] - moments[0] > 0.3, "streams are closed in waves, not all at once"
    assert len({retry for _, _, retry in closes}) > 1, "retry hints are jittered"
    assert await asyncio.to_thread(srv.proc.wait, 15) == 0


async def test_two_workers_share_the_port_and_metrics_add_up(
    service: StartService, redis_server: RedisServer, room: str
) -> None:
    srv = await service(REDIS_URL=redis_server.url, WORKERS="2")
    url = f"{srv.url}/api/v1/rooms/{room}/logs"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        await poll_until(lambda: _both_up(http, srv.url))
        sent_before = await _metric(http, srv.url, "roomlogs_events_sent_total")
        # Every stream is its own TCP connection, which the kernel gives to either worker.
        responses = [await http.get(url, headers=auth()) for _ in range(3)]
        try:
            streams = [SSEStream(r) for r in responses]
            for s in streams:
                assert (await s.next()).event == "connected"
            assert await _metric(http, srv.url, "roomlogs_connections") == 3
            for i in range(10):
                async with http.post(url, json=sample_log(i), headers=auth()) as r:
                    assert r.status == 202
            for s in streams:
                assert len(await s.collect(10)) == 10

            async def counted() -> bool:
                return (
                    await _metric(http, srv.url, "roomlogs_events_sent_total") - sent_before >= 30
                )

            await poll_until(counted)
            sent = await _metric(http, srv.url, "roomlogs_events_sent_total") - sent_before
            assert sent == 30
            assert await _metric(http, srv.url, "roomlogs_published_logs_total") >= 10
        finally:
            for r in responses:
                r.close()


async def _both_up(http: aiohttp.ClientSession, url: str) -> bool:
    async with http.get(url + "/metrics") as r:
        text = await r.text()
    return text.count("roomlogs_broker_up") >= 1 and " 0.0" not in "".join(
        line for line in text.splitlines() if line.startswith("roomlogs_broker_up")
    )
