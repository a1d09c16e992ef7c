"""Publishers' tools: the Python helper, `roomlogs publish`, `roomlogs tail`."""

from __future__ import annotations

import asyncio
import os
import sys

import aiohttp
import pytest

from service.publisher import Publisher, PublishError
from service.tail import format_log

from .conftest import SECRET, MakeClient, StartService, auth, token
from .support import ROOT, RedisServer, ServiceProcess, SSEStream, poll_until


async def test_helper_over_redis_stores_and_publishes_with_an_id(
    make_client: MakeClient, redis_server: RedisServer, room: str
) -> None:
    client = await make_client(redis=True)
    async with client.get(f"/api/v1/rooms/{room}/logs", headers=auth()) as resp:
        sse = SSEStream(resp)
        await sse.next()
        async with Publisher(redis_url=redis_server.url) as publisher:
            stream_id = await publisher.emit(
                room, "built the story", agent_type="story", level="success", metadata={"n": 1}
            )
        (event,) = await sse.collect(1)
    assert event.id == stream_id
    log = event.json()
    assert log["message"] == "built the story"
    assert log["agentType"] == "story"
    assert log["level"] == "success"
    assert log["metadata"] == {"n": 1}
    history = await (await client.get(f"/api/v1/rooms/{room}/logs/history", headers=auth())).json()
    assert [entry["id"] for entry in history["logs"]] == [stream_id]


async def test_helper_over_http_publishes_and_reports_refusals(
    make_client: MakeClient, room: str
) -> None:
    client = await make_client()
    base = str(client.make_url("/"))
    async with client.get(f"/api/v1/rooms/{room}/logs", headers=auth()) as resp:
        sse = SSEStream(resp)
        await sse.next()
        async with Publisher(url=base, token=token()) as publisher:
            ids = await publisher.emit_many(
                room,
                [
                    {"agentType": "code", "level": "info", "message": "a"},
                    {"agentType": "code", "level": "warn", "message": "b"},
                ],
            )
        events = await sse.collect(2)
    assert [e.id for e in events] == ids
    async with Publisher(url=base, token=token(rooms=room, publish="elsewhere")) as publisher:
        with pytest.raises(PublishError, match="403 room_not_allowed"):
            await publisher.emit(room, "refused")
    async with Publisher(url=base, token=token()) as publisher:
        with pytest.raises(PublishError, match="invalid room id"):
            await publisher.emit("bad:room", "refused")


async def _run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        *args,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_publish_to_redis_and_over_http(
    service: StartService, redis_server: RedisServer, room: str
) -> None:
    srv = await service(REDIS_URL=redis_server.url)
    code, out, err = await _run_cli(
        "publish", room, "via redis", "--agent", "deploy", "--level", "warn",
        "--metadata", '{"k": 1}', env={"REDIS_URL": redis_server.url},
    )  # fmt: skip
    assert code == 0, err
    redis_id = out.strip()
    code, out, err = await _run_cli(
        "publish", room, "via http", "--url", srv.url, env={"JWT_SECRET": SECRET, "REDIS_URL": ""}
    )
    assert code == 0, err
    http_id = out.strip()
    code, out, err = await _run_cli(
        "publish", room, "x", "--url", srv.url, "--level", "loud", env={"JWT_SECRET": SECRET}
    )
    assert code == 1
    assert "not stored" in err

    async with aiohttp.ClientSession() as http:
        async with http.get(f"{srv.url}/api/v1/rooms/{room}/logs/history", headers=auth()) as r:
            logs = (await r.json())["logs"]
    assert [(log["id"], log["message"]) for log in logs] == [
        (redis_id, "via redis"),
        (http_id, "via http"),
    ]
    assert logs[0]["agentType"] == "deploy"
    assert logs[0]["level"] == "warn"
    assert logs[0]["metadata"] == {"k": 1}


async def test_cli_tail_resumes_by_id_after_the_server_restarts(
    service: StartService, redis_server: RedisServer, room: str
) -> None:
    srv = await service(REDIS_URL=redis_server.url)
    tail = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", "tail", room, "--url", srv.url, "--history", "0",
        "--count", "4", cwd=ROOT, env={**os.environ, "JWT_SECRET": SECRET},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert tail.stdout is not None
    async with Publisher(redis_url=redis_server.url) as publisher:
        # Wait until tail's stream is registered (a room with one stream) before publishing.
        async with aiohttp.ClientSession() as http:

            async def streaming() -> bool:
                async with http.get(srv.url + "/metrics") as r:
                    return "roomlogs_connections 1.0" in await r.text()

            await poll_until(streaming)
        await publisher.emit(room, "one")
        await publisher.emit(room, "two")
        first = [await tail.stdout.readline() for _ in range(2)]
        srv.stop()
        restarted = ServiceProcess(
            env={"JWT_SECRET": SECRET, "REDIS_URL": redis_server.url}, port=srv.port
        )
        restarted.start(srv.log_path or ROOT / "restart.log")
        try:
            await restarted.wait_healthy()
            # Published before tail has reconnected: it must come from history, by id.
            await publisher.emit(room, "three")
            await publisher.emit(room, "four", level="error")
            async with asyncio.timeout(30):
                rest, err = await tail.communicate()
        finally:
            restarted.stop()
    lines = [line.decode().rstrip("\n") for line in first] + rest.decode().splitlines()
    assert tail.returncode == 0, err
    assert [line.split("] ", 1)[1] for line in lines] == ["one", "two", "three", "four"]


def test_tail_colours_levels_only_on_request() -> None:
    log = {"timestamp": "t", "level": "error", "agentType": "code", "message": "boom"}
    assert format_log(log, colour=False) == "t ERROR   [code] boom"
    coloured = format_log(log, colour=True)
    assert coloured.startswith("\033[31;1m")
    assert coloured.endswith("\033[0m")
    assert "boom" in coloured
