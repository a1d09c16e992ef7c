"""Readiness is the container's: with WORKERS=N, `/readyz` is 200 only when every worker's
subscription is live (DESIGN.md "Scale"), whichever worker answers."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import multiprocess

from service.metrics import workers_ready
from tests.support.aio import poll_until
from tests.support.factories import SECRET, MakeClient
from tests.support.paths import ROOT
from tests.support.servers import RedisServer, ServiceProcess

# A worker as far as readiness goes: its Metrics, its gauge set, then it waits for stdin.
WORKER = """
import sys
from service.metrics import Metrics
Metrics().worker_ready.set(float(sys.argv[1]))
print("set", flush=True)
sys.stdin.read()
"""


def _worker(directory: Path, ready: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(ready)],
        cwd=ROOT,
        env={"PROMETHEUS_MULTIPROC_DIR": str(directory), "PATH": "/usr/bin:/bin"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "set\n"
    return proc


async def test_readiness_counts_every_living_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_client: MakeClient
) -> None:
    """Worker processes writing their gauges for real, and the `/readyz` of an app told
    WORKERS=2 answering for them (in this process, prometheus-client writes no files)."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    ready, connecting = _worker(tmp_path, 1), _worker(tmp_path, 0)
    procs = [ready, connecting]
    try:
        assert workers_ready() == (2, 1)
        client = await make_client(redis=True, workers=2)
        async with client.get("/readyz") as r:
            assert r.status == 503
            assert (await r.json())["reason"] == "workers: 1 of 2 ready (0 not started yet)"
        # The connecting one dies; the supervisor forgets it and starts another, ready.
        connecting.kill()
        connecting.wait(timeout=10)
        multiprocess.mark_process_dead(connecting.pid)  # type: ignore[no-untyped-call]
        assert workers_ready() == (1, 1)
        async with client.get("/readyz") as r:
            assert (await r.json())["reason"] == "workers: 1 of 2 ready (1 not started yet)"
        procs.append(_worker(tmp_path, 1))
        assert workers_ready() == (2, 2)
        async with client.get("/readyz") as r:
            assert r.status == 200
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=10)
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()


async def test_with_two_workers_the_container_is_ready_only_once_redis_is(tmp_path: Path) -> None:
    """Both workers bind the port at once; neither says 200 before both are subscribed."""
    redis = RedisServer()  # not started yet: the workers start without Redis
    srv = ServiceProcess(env={"JWT_SECRET": SECRET, "REDIS_URL": redis.url, "WORKERS": "2"})
    srv.start(tmp_path / "service.log")
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:

            async def answers() -> bool:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(srv.url + "/healthz") as r:
                        return r.status == 200
                return False

            await poll_until(answers)
            statuses = []
            for _ in range(20):  # new connections: SO_REUSEPORT spreads them over both
                async with http.get(srv.url + "/readyz") as r:
                    statuses.append(r.status)
            assert statuses == [503] * 20
            redis.start()

            async def all_ready() -> bool:
                got = []
                for _ in range(20):
                    async with http.get(srv.url + "/readyz") as r:
                        got.append(r.status)
                return got == [200] * 20

            await poll_until(all_ready, timeout=30)
            async with http.get(srv.url + "/metrics") as r:
                text = await r.text()
            gauges = [ln for ln in text.splitlines() if ln.startswith("roomlogs_worker_ready{")]
            assert len(gauges) == 2
            assert all(ln.endswith(" 1.0") for ln in gauges)
    finally:
        srv.stop()
        redis.stop()
