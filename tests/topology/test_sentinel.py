"""Redis Sentinel: a gateway (`python -m service serve` with REDIS_SENTINELS and
PUBLISH_REPLICAS=1) follows a failover while streams are open and a publisher keeps posting.

Every acknowledged log reaches every stream of its room once, in publish order, whether the
primary is switched by `SENTINEL FAILOVER` (the old one stays a writable primary for ~10 s) or
killed; readiness is 503 while the gateway cannot serve and 200 after. A publish that the
replica did not acknowledge is a 504 whose retry with the same key returns the same ids.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from service.broker._errors import never_sent
from service.broker.keys import PLAIN
from service.broker.sentinel import SentinelLink
from service.settings import Settings
from service.sse import Event
from tests.support.aio import background, poll_until
from tests.support.factories import StartService, auth, sample_log
from tests.support.sentinel import SentinelGroup
from tests.support.servers import ServiceProcess
from tests.support.sse import SSEStream

pytestmark = [pytest.mark.process, pytest.mark.topology]

ROOMS = 3
STREAMS_PER_ROOM = 2
BEFORE = 15  # logs acknowledged per room before the failover
AFTER = 15  # and after it
RETRY_PAUSE = 0.05  # a publisher's pause before sending a refused publish again


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    deployment = SentinelGroup(tmp_path / "sentinel")
    deployment.start()
    yield deployment
    deployment.stop()


async def _gateway(service: StartService, group: SentinelGroup, **env: str) -> ServiceProcess:
    env = {"PUBLISH_REPLICAS": "1", "HEARTBEAT_INTERVAL": "0.5", **env}
    return await service(REDIS_SENTINELS=group.addresses, **env)


@dataclass
class Reader:
    """One stream, read as EventSource does: on an end or a refusal, again with Last-Event-ID."""

    url: str
    logs: list[Event] = field(default_factory=list)
    connects: int = 0
    heartbeats: int = 0
    live: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, http: aiohttp.ClientSession) -> None:
        last: str | None = None
        while True:
            headers = auth() | ({"Last-Event-ID": last} if last else {})
            pause = 0.05
            try:
                async with http.get(self.url, headers=headers) as resp:
                    assert resp.status == 200, await resp.text()
                    async for ev in SSEStream(resp).events():
                        if ev.event == "connected":
                            self.connects += 1
                            self.live.set()
                        elif ev.event == "log":
                            self.logs.append(ev)
                            last = ev.id or last
                        elif ev.event == "heartbeat":
                            self.heartbeats += 1
                        elif ev.event == "unavailable":
                            pause = min(ev.json()["retryMs"] / 1000, 0.25)
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
                pass
            await asyncio.sleep(pause)


@dataclass
class Publisher:
    """POSTs one log after another to a room, each with its own Idempotency-Key, sent again
    with that key after a 503, a 504 or a connection error until it is acknowledged."""

    url: str
    room: str
    acked: list[tuple[int, str]] = field(default_factory=list)  # (seq, id) in order
    sent_at: list[float] = field(default_factory=list)  # when each one's last attempt began
    answers: collections.Counter[str] = field(default_factory=collections.Counter)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, http: aiohttp.ClientSession) -> None:
        seq = 0
        while not self.stop.is_set():
            key = f"{self.room}-{seq}"
            while True:
                began = asyncio.get_running_loop().time()
                try:
                    async with http.post(
                        self.url, json=sample_log(seq), headers=auth() | {"Idempotency-Key": key}
                    ) as r:
                        self.answers[str(r.status)] += 1
                        if r.status == 202:
                            ids = (await r.json())["ids"]
                            self.acked.append((seq, ids[0]))
                            self.sent_at.append(began)
                            break
                        assert r.status in (503, 504), await r.text()
                except (aiohttp.ClientConnectionError, TimeoutError):
                    self.answers["connection error"] += 1
                await asyncio.sleep(RETRY_PAUSE)
            seq += 1
            await asyncio.sleep(0.02)


async def _readiness(http: aiohttp.ClientSession, url: str, seen: list[int]) -> None:
    """Every change of /readyz's status, polled (another process's state)."""
    while True:
        try:
            async with http.get(url + "/readyz") as r:
                status = r.status
        except aiohttp.ClientConnectionError:
            status = 0
        if not seen or seen[-1] != status:
            seen.append(status)
        await asyncio.sleep(0.05)


async def _failover_under_load(
    service: StartService,
    group: SentinelGroup,
    room: str,
    act: Callable[[int], None],
    recover: Callable[[int], None] = lambda old: None,
) -> tuple[list[int], list[Reader], list[Publisher]]:
    gw = await _gateway(service, group)
    rooms = [f"{room}-{i}" for i in range(ROOMS)]
    url = f"{gw.url}/api/v1/rooms/{{}}/logs"
    readers = {r: [Reader(url.format(r)) for _ in range(STREAMS_PER_ROOM)] for r in rooms}
    publishers = [Publisher(url.format(r), r) for r in rooms]
    readiness: list[int] = []
    everyone = [reader for group_ in readers.values() for reader in group_]
    timeout = aiohttp.ClientTimeout(total=None, sock_read=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with background(
            _readiness(http, gw.url, readiness), *(reader.run(http) for reader in everyone)
        ):
            async with asyncio.timeout(10):
                for reader in everyone:
                    await reader.live.wait()
            async with background(*(p.run(http) for p in publishers)) as tasks:

                async def acked(count: int) -> bool:
                    return all(len(p.acked) >= count for p in publishers)

                answers = [p.answers for p in publishers]
                await _within("acknowledged before", lambda: acked(BEFORE), 20, answers)
                old = await asyncio.to_thread(group.primary_port)
                act(old)
                await asyncio.to_thread(group.wait_switched, old)
                await asyncio.to_thread(recover, old)
                switched = max(len(p.acked) for p in publishers)
                await _within(
                    "acknowledged after the switch",
                    lambda: acked(switched + AFTER),
                    45,
                    (answers, readiness),
                )
                for p in publishers:
                    p.stop.set()
                async with asyncio.timeout(20):
                    await asyncio.wait(tasks)

            async def delivered() -> bool:
                for p in publishers:
                    ids = {i for _, i in p.acked}
                    for reader in readers[p.room]:
                        if not ids <= {ev.id for ev in reader.logs}:
                            return False
                return True

            with contextlib.suppress(TimeoutError):
                await poll_until(delivered, timeout=20)
            await _within("ready", lambda: _is(readiness, 200), 20, readiness)

    for p in publishers:
        acked_ids = [i for _, i in p.acked]
        acked_seqs = {seq for seq, _ in p.acked}
        for reader in readers[p.room]:
            got = [ev.id for ev in reader.logs]
            assert len(got) == len(set(got)), f"{p.room}: a log delivered twice"
            assert [i for i in got if i in set(acked_ids)] == acked_ids, (
                f"{p.room}: acknowledged logs missing or out of order ({p.answers})"
            )
            # Anything else is a log an old primary stored and published but never
            # replicated: answered 504 (PUBLISH_REPLICAS), sent again, stored on the new one.
            for ev in reader.logs:
                if ev.id not in set(acked_ids):
                    assert int(ev.json()["metadata"]["step"]) in acked_seqs
    return readiness, everyone, publishers


async def _within(
    what: str, check: Callable[[], Awaitable[bool]], timeout: float, state: object
) -> None:
    """`poll_until`, failing with what was awaited and the state it was in."""
    try:
        await poll_until(check, timeout=timeout)
    except TimeoutError:
        raise AssertionError(f"not within {timeout:.0f}s: {what}; {state}") from None


async def _is(readiness: list[int], status: int) -> bool:
    return bool(readiness) and readiness[-1] == status


async def test_sentinel_failover_under_load(
    service: StartService, group: SentinelGroup, room: str
) -> None:
    readiness, _, publishers = await _failover_under_load(
        service, group, room, lambda old: group.failover()
    )
    assert readiness[-1] == 200
    # No publish was acknowledged by the old primary after the switch: with one replica and
    # PUBLISH_REPLICAS=1 every acknowledged log is on the new primary (checked above).
    assert all(p.answers["202"] >= BEFORE + AFTER for p in publishers)


async def test_primary_killed_under_load(
    service: StartService, group: SentinelGroup, room: str
) -> None:
    # The killed primary comes back (Sentinel makes it a replica of the new one): with
    # PUBLISH_REPLICAS=1, no publish is acknowledged until a replica holds it.
    readiness, readers, publishers = await _failover_under_load(
        service,
        group,
        room,
        lambda old: group.node(old).kill(),
        lambda old: group.node(old).start(),
    )
    # Not ready while no primary could be reached, ready again after the failover.
    assert 503 in readiness, readiness
    assert readiness[-1] == 200
    assert sum(p.answers["503"] for p in publishers) > 0
    # The open streams stayed open through the outage, with heartbeats.
    assert all(r.heartbeats > 0 for r in readers)
    assert [r.connects for r in readers] == [1] * len(readers)


async def test_replica_down_is_outcome_unknown_and_retry_returns_same_ids(
    service: StartService, group: SentinelGroup, room: str
) -> None:
    gw = await _gateway(service, group, PUBLISH_REPLICAS_TIMEOUT_MS="200")
    url = f"{gw.url}/api/v1/rooms/{room}/logs"

    async def post(http: aiohttp.ClientSession, key: str) -> tuple[int, dict[str, object]]:
        headers = auth() | {"Idempotency-Key": key}
        async with http.post(url, json=sample_log(7), headers=headers) as r:
            return r.status, await r.json()

    async with aiohttp.ClientSession() as http:
        status, body = await post(http, "first")
        assert status == 202, body

        replica = group.replicas[0]
        replica.stop()
        status, body = await post(http, "second")
        assert status == 504, body
        assert body["error"] == "publish_outcome_unknown"
        assert "PUBLISH_REPLICAS" in str(body["detail"])

        replica.start()
        await asyncio.to_thread(group.wait_stable)
        status, body = await post(http, "second")
        assert status == 202, body
        assert body["replayed"] is True
        async with http.get(url + "/history", headers=auth()) as r:
            stored = [log["id"] for log in (await r.json())["logs"]]
        # The 504's logs were stored once; the retry answered their ids, storing nothing.
        assert len(stored) == 2
        assert body["ids"] == stored[1:]
        status, again = await post(http, "second")
        assert (status, again["ids"]) == (202, body["ids"])


@pytest.mark.parametrize("watched", ["up", "killed"])
async def test_no_publish_is_acknowledged_by_the_old_primary_after_the_switch(
    service: StartService, group: SentinelGroup, room: str, watched: str
) -> None:
    """Without PUBLISH_REPLICAS, what the old primary acknowledged before the switch may be
    lost (documented); after the gateway heard of the switch, nothing is acknowledged by
    it, although it stays a writable primary for ~10 s. With the sentinel the gateway
    follows killed first, it follows another."""
    gw = await _gateway(service, group, PUBLISH_REPLICAS="0")
    if watched == "killed":
        group.sentinels[0].kill()  # REDIS_SENTINELS' first: the one the watcher starts on
    url = f"{gw.url}/api/v1/rooms/{{}}/logs"
    publishers = [Publisher(url.format(f"{room}-{i}"), f"{room}-{i}") for i in range(ROOMS)]
    async with aiohttp.ClientSession() as http:
        async with background(*(p.run(http) for p in publishers)) as tasks:

            async def acked(count: int) -> bool:
                return all(len(p.acked) >= count for p in publishers)

            await poll_until(lambda: acked(BEFORE), timeout=20)
            old = await asyncio.to_thread(group.primary_port)
            group.failover()
            new = await asyncio.to_thread(group.wait_switched, old)
            switched = asyncio.get_running_loop().time()  # every sentinel names `new`

            async def late_acked() -> bool:
                # Counted by when each attempt began: one begun just before `switched` and
                # acknowledged after it is not late.
                return all(sum(at > switched for at in p.sent_at) >= 2 * AFTER for p in publishers)

            await poll_until(late_acked, timeout=20)
            for p in publishers:
                p.stop.set()
            async with asyncio.timeout(20):
                await asyncio.wait(tasks)
    stored = group.node(new).client()
    for p in publishers:
        rows: Any = stored.xrange(PLAIN.history(p.room))
        held = {raw_id.decode() for raw_id, _ in rows}
        late = [i for (_, i), at in zip(p.acked, p.sent_at, strict=True) if at > switched]
        assert len(late) >= 2 * AFTER
        assert [i for i in late if i not in held] == [], "acknowledged by the old primary"


async def test_a_stalled_primary_is_left_for_the_new_one(
    service: StartService, group: SentinelGroup, room: str
) -> None:
    """SIGSTOP: the old primary's sockets stay open and silent. Sentinel fails over, and the
    gateway follows at the announcement: the open streams get what is published next."""
    gw = await _gateway(service, group, PUBLISH_REPLICAS="0")
    url = f"{gw.url}/api/v1/rooms/{room}/logs"
    timeout = aiohttp.ClientTimeout(total=None, sock_read=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        readers = [Reader(url) for _ in range(STREAMS_PER_ROOM)]
        async with background(*(r.run(http) for r in readers)):
            async with asyncio.timeout(10):
                for reader in readers:
                    await reader.live.wait()
            old = await asyncio.to_thread(group.primary_port)
            group.node(old).pause()
            await asyncio.to_thread(group.wait_switched, old)
            ids: list[str] = []
            for seq in range(3):

                async def stored(seq: int = seq) -> bool:
                    async with http.post(
                        url, json=sample_log(seq), headers=auth() | {"Idempotency-Key": f"s{seq}"}
                    ) as r:
                        if r.status == 202:
                            ids.extend((await r.json())["ids"])
                        return r.status == 202

                await poll_until(stored, timeout=20, interval=0.1)

            async def delivered() -> bool:
                return all([ev.id for ev in r.logs] == ids for r in readers)

            await poll_until(delivered, timeout=10)
        async with http.get(gw.url + "/readyz") as r:
            assert r.status == 200


async def test_a_connection_is_never_made_to_a_replica(group: SentinelGroup) -> None:
    """A sentinel's stale answer naming a replica: the connect checks ROLE and refuses it, as
    a connection error before any command (a publish then answers 503, not stored)."""
    link = SentinelLink(
        Settings(redis_sentinels=tuple(("127.0.0.1", s.port) for s in group.sentinels))
    )
    conn = link.pool.make_connection()  # type: ignore[no-untyped-call]
    try:
        with pytest.raises(RedisConnectionError, match="not the primary") as refused:
            await conn.connect_to(("127.0.0.1", group.replicas[0].port))
        assert never_sent(refused.value)
        await conn.connect_to(("127.0.0.1", group.primary.port))
        assert conn.is_connected
    finally:
        await conn.disconnect()
        await link.aclose()
