"""Publishers' commands as real subprocesses against the real server: `roomlogs publish`,
`roomlogs tail` (the Python helper they use: tests/app/test_publisher.py)."""

from __future__ import annotations

import asyncio
import os
import sys

import aiohttp

from service.publisher import Publisher
from tests.support.aio import poll_until
from tests.support.factories import SECRET, StartService, auth
from tests.support.paths import ROOT
from tests.support.servers import RedisServer, ServiceProcess


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
    assert code == 2  # refused by the CLI before anything is sent (issue 15, item 7)
    assert "--level" in err

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


async def test_cli_tail_follows_several_rooms_on_one_stream_with_filters(
    service: StartService, redis_server: RedisServer, room: str
) -> None:
    srv = await service(REDIS_URL=redis_server.url)
    a, b, c = f"{room}-a", f"{room}-b", f"{room}-c"
    tail = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", "tail", a, b, "--url", srv.url, "--history", "0",
        "--level", "warn", "--agent", "code", "--count", "2", cwd=ROOT,
        env={**os.environ, "JWT_SECRET": SECRET},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with Publisher(redis_url=redis_server.url) as publisher:
        async with aiohttp.ClientSession() as http:

            async def streaming() -> bool:
                async with http.get(srv.url + "/metrics") as r:
                    return "roomlogs_rooms 2.0" in await r.text()

            await poll_until(streaming)
        await publisher.emit(a, "info of a", agent_type="code", level="info")
        await publisher.emit(c, "error of c", agent_type="code", level="error")
        await publisher.emit(b, "warn of b, story", agent_type="story", level="warn")
        await publisher.emit(b, "error of b", agent_type="code", level="error")
        await publisher.emit(a, "warn of a", agent_type="code", level="warn")
        async with asyncio.timeout(30):
            out, err = await tail.communicate()
    assert tail.returncode == 0, err
    lines = out.decode().splitlines()
    assert [(line.split(" ", 1)[0], line.split("] ", 1)[1]) for line in lines] == [
        (b, "error of b"),
        (a, "warn of a"),
    ]
