"""The original NestJS integration scenario, against a real server process and a real Redis."""

from __future__ import annotations

import aiohttp
import orjson

from tests.support.factories import StartService, auth, sample_log
from tests.support.servers import RedisServer
from tests.support.sse import SSEStream


async def test_original_scenario_bearer_redis_cli_publish_and_heartbeat(
    service: StartService, redis_server: RedisServer, room: str
) -> None:
    srv = await service(REDIS_URL=redis_server.url, HEARTBEAT_INTERVAL="0.3")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{srv.url}/api/v1/rooms/{room}/logs", headers=auth()) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            assert resp.headers["Cache-Control"] == "no-cache"
            assert resp.headers["X-Accel-Buffering"] == "no"
            sse = SSEStream(resp)
            connected = await sse.next()
            assert connected.event == "connected"
            assert connected.retry == 3000
            body = connected.json()
            assert body["roomId"] == room
            assert isinstance(body["timestamp"], str)
            assert body["timestamp"].endswith("Z")

            logs = [sample_log(i, level=lvl) for i, lvl in enumerate(["info", "warn", "error"])]
            for log in logs:
                # What the NestJS RoomsService did: a plain PUBLISH of the log's JSON.
                assert (
                    redis_server.cli(
                        "PUBLISH", f"room:{room}:logs", orjson.dumps(log).decode()
                    ).strip()
                    == "1"
                )
            events = await sse.collect(3)
            assert [e.json() for e in events] == logs
            # v1.1, "Plain PUBLISH, replayable": stored, and delivered with their stream ids.
            ids = [e.id for e in events]
            assert all(ids)

            heartbeat = await sse.next(skip=())
            assert heartbeat.event == "heartbeat"
            assert "timestamp" in heartbeat.json()
        # A page loaded later (or a reconnect) gets them again, with the same ids.
        url = f"{srv.url}/api/v1/rooms/{room}/logs?history=10"
        async with http.get(url, headers=auth()) as resp:
            replayed = await SSEStream(resp).collect(3)
        assert [(e.id, e.json()) for e in replayed] == list(zip(ids, logs, strict=True))
