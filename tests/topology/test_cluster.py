"""A roomlogs gateway (a process, REDIS_CLUSTER_NODES) on a real six-node Redis Cluster, with
streams on rooms of every shard and publishers POSTing steadily (an Idempotency-Key per log,
retried with the same key on 503/504), through (a) `CLUSTER FAILOVER` on a replica and
(b) SIGKILL of a primary: every acknowledged log reaches every stream of its room once and in
order, the streams stay open, and /readyz is 503 while a shard cannot be served, 200 after.

The gateway runs with PUBLISH_REPLICAS=1 (one replica per primary here): a publish is
acknowledged only once the shard's replica holds it, so no acknowledged log can be lost with
the killed primary. The promoted replica then has no replica of its own: its shard's
publishes answer 504 (retried) until the killed node is restarted and rejoins as its replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest

from tests.support.aio import poll_until
from tests.support.cluster import ClusterNodeProcess, RedisClusterProcesses
from tests.support.factories import StartService, auth, sample_log
from tests.support.servers import ServiceProcess
from tests.support.sse import Follower

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]

PER_ROOM = 2  # streams per room
INTERVAL = 0.05  # seconds between one publisher's logs
RETRYABLE = {502, 503, 504}


@pytest.fixture
async def gateway(service: StartService, cluster: RedisClusterProcesses) -> ServiceProcess:
    return await service(
        REDIS_CLUSTER_NODES=cluster.seeds, PUBLISH_REPLICAS="1", HEARTBEAT_INTERVAL="1"
    )


@dataclass
class Run:
    """What the publishers had acknowledged, and what /readyz answered meanwhile."""

    acked: dict[str, list[str]]
    retries: int = 0
    refusals: list[str] = field(default_factory=list)  # the bodies of the 503/504 answers
    readiness: list[int] = field(default_factory=list)


async def _publish(
    http: aiohttp.ClientSession, url: str, room: str, run: Run, stop: asyncio.Event
) -> None:
    for n in itertools.count():
        if stop.is_set():
            return
        message = f"post {room} {n}"
        key = uuid.uuid4().hex
        body = {**sample_log(n), "message": message}
        async with asyncio.timeout(30):  # retried through the failover, with the same key
            while True:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.post(
                        f"{url}/api/v1/rooms/{room}/logs",
                        json=body,
                        headers={**auth(), "Idempotency-Key": key},
                        timeout=aiohttp.ClientTimeout(total=10),
                    ) as r:
                        if r.status == 202:
                            break
                        text = await r.text()
                        assert r.status in RETRYABLE, text
                        run.refusals.append(text)
                run.retries += 1
                await asyncio.sleep(0.1)
        run.acked[room].append(message)
        await asyncio.sleep(INTERVAL)


async def _watch_readiness(http: aiohttp.ClientSession, url: str, run: Run) -> None:
    while True:
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(url + "/readyz") as r:
                run.readiness.append(r.status)
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _traffic(
    gateway: ServiceProcess, cluster: RedisClusterProcesses
) -> AsyncIterator[tuple[Run, dict[str, list[Follower]]]]:
    """Streams on two rooms of every primary, then a publisher per room and a readiness
    watcher; on exit the publishers stop, and every stream must catch up with them."""
    rooms = cluster.rooms_on_every_primary(per_primary=2)
    run = Run(acked={room: [] for room in rooms})
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        followers = {
            room: [
                Follower(http, f"{gateway.url}/api/v1/rooms/{room}/logs", auth())
                for _ in range(PER_ROOM)
            ]
            for room in rooms
        }
        every = [f for fs in followers.values() for f in fs]
        reading = [asyncio.create_task(f.run(10**9, timeout=100)) for f in every]
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        try:
            async with asyncio.timeout(20):
                await asyncio.gather(*(f.ready.wait() for f in every))
            tasks = [asyncio.create_task(_publish(http, gateway.url, r, run, stop)) for r in rooms]
            watcher = asyncio.create_task(_watch_readiness(http, gateway.url, run))
            await asyncio.sleep(1)  # traffic before the fault (a duration, not a wait for state)
            yield run, followers
            await asyncio.sleep(1.5)  # and after it
            stop.set()
            await asyncio.gather(*tasks)
            watcher.cancel()

            async def complete() -> bool:
                return all(
                    set(run.acked[room]) <= set(f.messages())
                    for room, fs in followers.items()
                    for f in fs
                )

            try:
                await poll_until(complete, timeout=20)
            except TimeoutError:
                missing = {
                    room: sorted(set(run.acked[room]) - set(f.messages()))[:5]
                    for room, fs in followers.items()
                    for f in fs
                    if not set(run.acked[room]) <= set(f.messages())
                }
                raise AssertionError(
                    f"acknowledged logs never delivered: {missing}\n"
                    f"gateway log:\n{gateway.output()[-6000:]}"
                ) from None
        finally:
            stop.set()
            for task in [*reading, *tasks]:
                task.cancel()
            await asyncio.gather(*reading, *tasks, return_exceptions=True)
    for room, fs in followers.items():
        for f in fs:
            got = f.messages()
            assert got == run.acked[room], f"{room}: not every acknowledged log once, in order"
            ids = [tuple(map(int, e.id.split("-"))) for e in f.logs if e.id]
            assert ids == sorted(ids)
            assert len(ids) == len(got)
            assert f.gaps == []
            assert f.connects == 1, f"{room}: the stream was ended (it should stay open)"
    assert all(len(v) > 10 for v in run.acked.values())
    downs = sum(1 for status in run.readiness if status != 200)
    print(
        f"\n{sum(map(len, run.acked.values()))} logs acknowledged on {len(rooms)} rooms "
        f"({run.retries} retries), each on {PER_ROOM} streams once, in order; /readyz "
        f"{downs} of {len(run.readiness)} polls not 200"
    )


async def _until_primary(node: ClusterNodeProcess, timeout: float = 20) -> None:
    async def promoted() -> bool:
        info = await asyncio.to_thread(node.info, "replication")
        return info["role"] == "master"

    await poll_until(promoted, timeout=timeout, interval=0.05)


async def _until_ready(gateway: ServiceProcess) -> None:
    async with aiohttp.ClientSession() as http:

        async def ready() -> bool:
            async with http.get(gateway.url + "/readyz") as r:
                return r.status == 200

        await poll_until(ready, timeout=20)


async def test_cluster_failover_on_a_replica(
    gateway: ServiceProcess, cluster: RedisClusterProcesses
) -> None:
    """A graceful failover: the old primary pushes `sunsubscribe` for every shard channel,
    the gateway resubscribes on the promoted replica and catches each room up."""
    primary = cluster.primaries()[0]
    replica = cluster.replica_of(primary)
    async with _traffic(gateway, cluster) as (run, _):
        await asyncio.to_thread(replica.cli, "CLUSTER", "FAILOVER")
        await _until_primary(replica)
        await _until_ready(gateway)
    assert run.readiness[-1] == 200
    await asyncio.to_thread(cluster.wait_ok)


async def test_sigkill_of_a_primary(
    gateway: ServiceProcess, cluster: RedisClusterProcesses
) -> None:
    """A crash: the replica is promoted after cluster-node-timeout (about 2 s); meanwhile
    that shard's publishes answer 503 (retried) and /readyz is 503. The promoted replica has
    no replica (PUBLISH_REPLICAS=1: its shard's publishes answer 504) until the killed node
    is restarted and has synced as its replica; afterwards every log acknowledged reaches
    every stream."""
    primary = cluster.primaries()[0]
    replica = cluster.replica_of(primary)
    async with _traffic(gateway, cluster) as (run, _):
        killed_at = time.monotonic()
        primary.kill()
        await _until_primary(replica)
        promoted_after = time.monotonic() - killed_at

        async def unreplicated() -> bool:  # the promoted primary's WAIT: no replica
            return any("PUBLISH_REPLICAS" in text for text in run.refusals)

        await poll_until(unreplicated, timeout=15)
        primary.restart()
        await asyncio.to_thread(cluster.wait_replica, primary, replica)
        await _until_ready(gateway)
    assert 503 in run.readiness, "readiness stayed 200 while a shard was gone"
    assert run.readiness[-1] == 200
    assert run.retries > 0
    assert promoted_after < 15
