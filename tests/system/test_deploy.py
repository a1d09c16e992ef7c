"""The deployment for real on one machine: the private Redis, two gateway processes, and nginx in
front of them with config/nginx.conf. 100 browsers-alike follow a room through nginx while logs
are published through nginx at a steady rate, and both gateways are restarted one after the
other (a rolling restart): with SIGTERM (graceful drain) and with SIGKILL (a crash). Every
client must end with every log, exactly once, in order.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.aio import poll_until
from tests.support.factories import StartService, auth, sample_log, token
from tests.support.servers import Nginx, RedisServer, ServiceProcess
from tests.support.sse import Follower, SSEStream

CLIENTS = 100
PUBLISH_INTERVAL = 0.01  # seconds between two publishes: a steady ~70 logs/s through nginx
TAIL = 20  # logs still published once the restarts are done: they come after every switch
GATEWAY_ENV = {"SHUTDOWN_TIMEOUT": "3", "RETRY_MS": "200"}


# -- the deployment ---------------------------------------------------------------------------


@dataclass
class Deployment:
    nginx: Nginx
    gateways: list[ServiceProcess]
    workdir: Path
    restarted: list[ServiceProcess] = field(default_factory=list)

    async def restart(self, index: int, sig: int, http: aiohttp.ClientSession) -> int:
        """Stop gateway `index` with `sig`, start it again on its port once it exited, and wait
        until nginx sends it traffic again. Returns the old process's exit status."""
        old = self.gateways[index]
        status = await asyncio.to_thread(old.stop, sig, 15)
        new = ServiceProcess(env=old.env, port=old.port)
        new.start(self.workdir / f"gateway-{old.port}-{len(self.restarted)}.log")
        self.restarted.append(new)
        self.gateways[index] = new
        await new.wait_healthy()
        await self.routed_to(new.port, http)
        return status

    async def routed_to(self, port: int, http: aiohttp.ClientSession, timeout: float = 15) -> None:
        """Until nginx has passed a request to 127.0.0.1:`port` and had its answer: after a
        refusal its passive health check leaves a gateway out for `fail_timeout`."""
        since = self.nginx.access_size()

        async def served() -> bool:
            async with http.get(self.nginx.url + "/healthz"):
                pass
            return any(
                e["path"] == "/healthz"
                and e["upstream"].split(", ")[-1] == f"127.0.0.1:{port}"
                and e["upstreamStatus"].split(", ")[-1] == "200"
                for e in self.nginx.access_entries(since)
            )

        await poll_until(served, timeout=timeout, interval=0.1)


@pytest.fixture
async def deployment(
    service: StartService, redis_server: RedisServer, tmp_path: Path
) -> AsyncIterator[Deployment]:
    env = {"REDIS_URL": redis_server.url, **GATEWAY_ENV}
    gateways = [await service(**env), await service(**env)]
    workdir = tmp_path / "nginx"
    workdir.mkdir()
    nginx = Nginx(workdir, [gw.port for gw in gateways])
    nginx.start()
    deployment = Deployment(nginx, gateways, tmp_path)
    try:
        await nginx.wait_up()
        yield deployment
    finally:
        for proc in deployment.restarted:
            proc.stop()
        nginx.stop()


# -- clients ----------------------------------------------------------------------------------


@dataclass
class Plan:
    """How many logs the run publishes: unknown until the restarts are over."""

    total: int | None = None

    def reached(self, count: int) -> bool:
        return self.total is not None and count >= self.total


class BalancedFollower(Follower):
    """`Follower` closer to a browser's EventSource behind a load balancer: before every
    reconnect it waits the last `retry:` hint (a draining gateway's jittered one after
    `unavailable`), and a non-200 answer (nginx's 502/504 when no gateway answers) is counted and
    retried later, not an assertion error: the tests assert on the counts instead (a browser
    would give up for good on it)."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        super().__init__(http, url)
        self.retry_ms = 200
        self.unavailable: list[str] = []  # reasons of `unavailable` events
        self.refusals: list[int] = []  # non-200 statuses
        self.cut = 0  # streams that ended without a clean close (reset, truncated chunks)

    async def follow(self, plan: Plan, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not plan.reached(len(self.logs)):
                headers = {"Last-Event-ID": self.last_id} if self.last_id else {}
                try:
                    async with self.http.get(self.url, headers=headers) as resp:
                        if resp.status != 200:
                            self.refusals.append(resp.status)
                        else:
                            self.connects += 1
                            if await self._read(SSEStream(resp), plan):
                                return
                except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
                    self.cut += 1
                await asyncio.sleep(self.retry_ms / 1000)

    async def _read(self, stream: SSEStream, plan: Plan) -> bool:
        """One connection's events; True once every log arrived."""
        async for ev in stream.events():
            if ev.retry is not None:
                self.retry_ms = ev.retry
            if ev.event == "log":
                self.logs.append(ev)
                self.last_id = ev.id or self.last_id
                if plan.reached(len(self.logs)):
                    return True
            elif ev.event == "connected":
                self.connected.append(ev)
                self.ready.set()
            elif ev.event == "gap":
                self.gaps.append(ev)
            elif ev.event == "unavailable":
                self.unavailable.append(ev.json()["reason"])
        return False


class Publisher:
    """Publishes `log 0`, `log 1`, … through nginx at a steady rate, each exactly once: when an
    answer is lost (a gateway killed mid-request gives nginx's 502, and nginx never resends a
    POST), it is sent again with the same `Idempotency-Key`, which stores it at most once."""

    def __init__(self, http: aiohttp.ClientSession, url: str, plan: Plan) -> None:
        self.http = http
        self.url = url
        self.plan = plan
        self.ids: list[str] = []
        self.unsure: list[int | str] = []  # statuses (or errors) of answers that were not 202

    async def run(self, done: asyncio.Event) -> None:
        for i in itertools.count():
            if self.plan.total is None and done.is_set():
                self.plan.total = i + TAIL
            if self.plan.reached(i):
                return
            self.ids.append(await self._publish(sample_log(i)))
            await asyncio.sleep(PUBLISH_INTERVAL)

    async def _publish(self, log: dict[str, Any]) -> str:
        headers = {**auth(), "Idempotency-Key": f"deploy-{log['message'].replace(' ', '-')}"}
        for _ in range(100):
            try:
                async with self.http.post(self.url, json=log, headers=headers) as r:
                    if r.status == 202:
                        stream_id: str = (await r.json())["ids"][0]
                        return stream_id
                    self.unsure.append(r.status)
            except aiohttp.ClientError as exc:
                self.unsure.append(type(exc).__name__)
            await asyncio.sleep(0.05)  # pacing between retries
        raise AssertionError(f"could not publish {log['message']}: {self.unsure[-5:]}")


# -- the test ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm-drain", "sigkill-crash"]
)
async def test_rolling_restart_behind_nginx_loses_nothing(
    deployment: Deployment, room: str, sig: int
) -> None:
    started = time.monotonic()
    nginx = deployment.nginx
    logs_url = f"{nginx.url}/api/v1/rooms/{room}/logs"
    tok = token(rooms=room, publish=[])
    plan = Plan()
    done = asyncio.Event()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        # What a browser does: the token in the query string (EventSource sends no headers).
        followers = [
            BalancedFollower(http, f"{logs_url}?access_token={tok}") for _ in range(CLIENTS)
        ]
        following = [asyncio.create_task(f.follow(plan, timeout=90)) for f in followers]
        async with asyncio.timeout(20):
            await asyncio.gather(*(f.ready.wait() for f in followers))
        publisher = Publisher(http, logs_url, plan)
        publishing = asyncio.create_task(publisher.run(done))
        try:
            await asyncio.sleep(0.5)
            statuses = [await deployment.restart(0, sig, http)]
            await asyncio.sleep(0.5)
            statuses.append(await deployment.restart(1, sig, http))
            await asyncio.sleep(0.3)
            done.set()
            async with asyncio.timeout(60):
                await publishing
                await asyncio.gather(*following)
        finally:
            for task in [publishing, *following]:
                task.cancel()

        # Request ids pass through nginx both ways.
        async with http.get(nginx.url + "/healthz", headers={"X-Request-Id": "deploy-rid-1"}) as r:
            assert r.headers["X-Request-Id"] == "deploy-rid-1"

    assert plan.total is not None
    expected = [f"log {i}" for i in range(plan.total)]
    assert len(set(publisher.ids)) == plan.total
    for n, f in enumerate(followers):
        assert f.messages() == expected, f"client {n}: {len(f.logs)} logs, {f.connects} connects"
        assert f.gaps == [], f"client {n} was told logs were lost"
        assert f.connects >= 2, f"client {n} was never moved"

    if sig == signal.SIGTERM:
        assert statuses == [0, 0], "a draining gateway exits 0"
        # The drain is what moved every client: each was told `shutdown` at least once, by a
        # clean close, and nginx never answered anything but the stream.
        assert all("shutdown" in f.unavailable for f in followers)
        assert sum(f.cut for f in followers) == 0, "a drained stream ends cleanly"
        assert [s for f in followers for s in f.refusals] == []
    else:
        assert statuses == [-signal.SIGKILL, -signal.SIGKILL]
        assert sum(f.cut for f in followers) >= 1, "killed gateways cut their streams"

    # No token in nginx's access log; both gateways served streams through it.
    entries = nginx.access_entries()
    text = nginx.access_log.read_text()
    assert "access_token" not in text
    assert tok not in text
    upstreams = {
        e["upstream"].split(", ")[-1] for e in entries if e["path"].endswith(f"/{room}/logs")
    }
    assert {f"127.0.0.1:{gw.port}" for gw in deployment.gateways} <= upstreams
    assert any(e["requestId"] == "deploy-rid-1" for e in entries)
    print(
        f"{sig!r}: {plan.total} logs to {CLIENTS} clients in {time.monotonic() - started:.1f}s; "
        f"reconnects {sum(f.connects for f in followers) - CLIENTS}, "
        f"cut {sum(f.cut for f in followers)}, "
        f"non-200 {sum(len(f.refusals) for f in followers)}, "
        f"publish answers lost {publisher.unsure}"
    )
