"""A gateway process checked end to end against its Redis, and one that must not get ready:
what the TLS and ACL tests share."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.aio import poll_until
from tests.support.factories import SECRET, auth, sample_log
from tests.support.servers import ServiceProcess
from tests.support.sse import SSEStream


async def stream_publish_history(base: str, room: str) -> list[dict[str, Any]]:
    """A stream opened, a log POSTed and received on it by id, then read back from history."""
    url = f"{base}/api/v1/rooms/{room}/logs"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        async with http.get(url, headers=auth()) as resp:
            assert resp.status == 200
            stream = SSEStream(resp)
            assert (await stream.next()).event == "connected"
            async with http.post(url, json=sample_log(1), headers=auth()) as r:
                assert r.status == 202, await r.text()
                [posted] = (await r.json())["ids"]
            [got] = await stream.collect(1)
            assert got.id == posted
            assert got.json()["message"] == "log 1"
        async with http.get(url + "/history", headers=auth()) as r:
            assert r.status == 200, await r.text()
            logs: list[dict[str, Any]] = (await r.json())["logs"]
    assert logs[0]["id"] == posted
    return logs


async def readiness(base: str) -> tuple[int, str]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        async with http.get(base + "/readyz") as r:
            body = await r.json()
            return r.status, str(body.get("reason", ""))


@contextlib.asynccontextmanager
async def unready_service(log_path: Path, **env: str) -> AsyncIterator[ServiceProcess]:
    """`python -m service serve` that is serving (`/healthz`) but need not become ready;
    stopped by PID at the end."""
    proc = ServiceProcess(env={"JWT_SECRET": SECRET, **env})
    proc.start(log_path)
    try:

        async def serving() -> bool:
            assert proc.proc is not None
            if proc.proc.poll() is not None:
                raise RuntimeError(f"service exited: {proc.output()}")
            try:
                async with aiohttp.ClientSession() as http:
                    async with http.get(proc.url + "/healthz") as r:
                        return r.status == 200
            except aiohttp.ClientError:
                return False

        await poll_until(serving)
        yield proc
    finally:
        proc.stop()


async def wait_unready(base: str, needle: str, timeout: float = 15) -> str:
    """The readiness reason once it names `needle` (a 503 throughout)."""
    seen: list[str] = []

    async def says() -> bool:
        status, reason = await readiness(base)
        assert status == 503, reason
        seen.append(reason)
        return needle in reason

    try:
        await poll_until(says, timeout=timeout)
    except TimeoutError:
        raise AssertionError(f"readiness never said {needle!r}: {seen[-1:]}") from None
    return seen[-1]
