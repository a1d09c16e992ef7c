"""Fan-out on the production process: many streams on one room all get every log in order
(rooms are isolated: tests/app/test_fanout.py)."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.support.factories import StartService, auth, sample_log
from tests.support.servers import RedisServer
from tests.support.sse import SSEStream


async def test_200_streams_on_one_room_receive_every_log_in_order(
    service: StartService, redis_server: RedisServer, room: str
) -> None:
    srv = await service(REDIS_URL=redis_server.url)
    streams, logs = 200, 50
    url = f"{srv.url}/api/v1/rooms/{room}/logs"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        responses = await asyncio.gather(*(http.get(url, headers=auth()) for _ in range(streams)))
        try:
            sse = [SSEStream(r) for r in responses]
            assert all(r.status == 200 for r in responses)
            for s in sse:
                assert (await s.next()).event == "connected"
            readers = [asyncio.create_task(s.collect(logs, timeout=30)) for s in sse]
            for i in range(logs):
                async with http.post(url, json=sample_log(i), headers=auth()) as r:
                    assert r.status == 202
            results = await asyncio.gather(*readers)
        finally:
            for r in responses:
                r.close()
    expected = [f"log {i}" for i in range(logs)]
    for events in results:
        assert [e.json()["message"] for e in events] == expected
        ids = [e.id or "" for e in events]
        assert all(ids), "logs published through the API carry their stream id"
        assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
