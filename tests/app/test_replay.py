"""Nothing lost: replay by Last-Event-ID, history=N, gaps, catch-up, slow readers."""

from __future__ import annotations

import asyncio
import random

import aiohttp

from service.sse import Event
from service.state import STATE
from tests.support.aio import background
from tests.support.factories import MakeClient, auth, publish_logs, sample_log
from tests.support.servers import RedisServer
from tests.support.sse import Follower, SSEStream


def _messages(events: list[Event]) -> list[str]:
    return [e.json()["message"] for e in events]


async def test_last_event_id_replays_every_log_after_it_then_live(
    make_client: MakeClient, broker_kind: str, room: str
) -> None:
    client = await make_client(redis=broker_kind == "redis")
    ids = await publish_logs(client, room, 0, 10)
    async with client.get(
        f"/api/v1/rooms/{room}/logs", headers={**auth(), "Last-Event-ID": ids[3]}
    ) as resp:
        sse = SSEStream(resp)
        connected = await sse.next()
        assert connected.json()["recovered"] is True
        replayed = await sse.collect(6)
        assert _messages(replayed) == [f"log {i}" for i in range(4, 10)]
        assert [e.id for e in replayed] == ids[4:]
        await publish_logs(client, room, 10, 2)
        assert _messages(await sse.collect(2)) == ["log 10", "log 11"]


async def test_last_event_id_query_parameter_works_like_the_header(
    make_client: MakeClient, broker_kind: str, room: str
) -> None:
    client = await make_client(redis=broker_kind == "redis")
    ids = await publish_logs(client, room, 0, 4)
    async with client.get(
        f"/api/v1/rooms/{room}/logs?lastEventId={ids[1]}", headers=auth()
    ) as resp:
        sse = SSEStream(resp)
        await sse.next()
        assert _messages(await sse.collect(2)) == ["log 2", "log 3"]


async def test_history_n_sends_the_last_n_logs_first(
    make_client: MakeClient, broker_kind: str, room: str
) -> None:
    client = await make_client(redis=broker_kind == "redis")
    await publish_logs(client, room, 0, 8)
    async with client.get(f"/api/v1/rooms/{room}/logs?history=3", headers=auth()) as resp:
        sse = SSEStream(resp)
        await sse.next()
        assert _messages(await sse.collect(3)) == ["log 5", "log 6", "log 7"]


async def test_an_id_older_than_the_window_gives_recovered_false_and_a_gap(
    make_client: MakeClient, broker_kind: str, room: str
) -> None:
    # Redis trims `MAXLEN ~` by whole stream nodes (100 entries), so publish well past that.
    client = await make_client(redis=broker_kind == "redis", history_max=5)
    ids = await publish_logs(client, room, 0, 1) + await publish_logs(client, room, 1, 250)
    async with client.get(
        f"/api/v1/rooms/{room}/logs", headers={**auth(), "Last-Event-ID": ids[0]}
    ) as resp:
        sse = SSEStream(resp)
        connected = await sse.next()
        assert connected.event == "connected"
        assert connected.json()["recovered"] is False
        gap = await sse.next()
        assert gap.event == "gap"
        first = await sse.next()
        assert first.event == "log"
        assert gap.json() == {"after": ids[0], "resumedFrom": first.id}
        assert first.id in ids[1:]
        assert first.id != ids[1], "the logs right after the given id are gone"


async def test_filters_apply_to_replay_and_live(
    make_client: MakeClient, broker_kind: str, room: str
) -> None:
    client = await make_client(redis=broker_kind == "redis")
    url = f"/api/v1/rooms/{room}/logs"
    kinds = [("story", "debug"), ("code", "warn"), ("story", "error"), ("story", "info")]
    for i, (agent, level) in enumerate(kinds):
        log = sample_log(i, agentType=agent, level=level)
        assert (await client.post(url, json=log, headers=auth())).status == 202
    async with client.get(url + "?history=10&level=info&agentType=story", headers=auth()) as r:
        sse = SSEStream(r)
        await sse.next()
        assert _messages(await sse.collect(2)) == ["log 2", "log 3"]
        for i, (agent, level) in enumerate([("story", "debug"), ("code", "error")], start=10):
            log = sample_log(i, agentType=agent, level=level)
            assert (await client.post(url, json=log, headers=auth())).status == 202
        log = sample_log(12, agentType="story", level="success")
        assert (await client.post(url, json=log, headers=auth())).status == 202
        assert _messages(await sse.collect(1)) == ["log 12"]


async def test_history_endpoint_pages_with_after_limit_and_next(
    make_client: MakeClient, broker_kind: str, room: str
) -> None:
    client = await make_client(redis=broker_kind == "redis")
    ids = await publish_logs(client, room, 0, 7)
    url = f"/api/v1/rooms/{room}/logs/history"
    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        query = f"?limit=3&after={after}" if after else "?limit=3"
        r = await client.get(url + query, headers=auth())
        assert r.status == 200
        body = await r.json()
        assert body["roomId"] == room
        seen += [log["id"] for log in body["logs"]]
        assert all(log["message"].startswith("log ") for log in body["logs"])
        pages += 1
        after = body["next"]
        if after is None:
            break
    assert seen == ids
    assert pages == 3


async def test_2000_logs_with_20_clients_reconnecting_at_random_lose_nothing(
    make_client: MakeClient, broker_kind: str, room: str
) -> None:
    client = await make_client(redis=broker_kind == "redis", history_max=5000)
    total = 2000
    rng = random.Random(1234)
    base = str(client.make_url(f"/api/v1/rooms/{room}/logs"))
    async with aiohttp.ClientSession() as http:
        followers = [Follower(http, base, auth()) for _ in range(20)]
        runs = (
            f.run(total, drop_after=lambda: rng.randint(1, 250), timeout=120) for f in followers
        )
        async with background(*runs) as tasks:
            # Everyone is connected before the first log: from then on, only reconnects.
            async with asyncio.timeout(10):
                await asyncio.gather(*(f.ready.wait() for f in followers))
            batch = 20
            for start in range(0, total, batch):
                logs = [sample_log(i) for i in range(start, start + batch)]
                r = await client.post(f"/api/v1/rooms/{room}/logs", json=logs, headers=auth())
                assert r.status == 202
                await asyncio.sleep(0.005)  # pacing: a steady rate, not synchronisation
            await asyncio.gather(*tasks)
    expected = [f"log {i}" for i in range(total)]
    for f in followers:
        assert f.messages() == expected
        assert f.connects > 3
        assert not f.gaps


async def test_pubsub_connection_killed_while_publishing_loses_nothing(
    make_client: MakeClient, redis_server: RedisServer, room: str
) -> None:
    client = await make_client(redis=True)
    assert client.app is not None
    broker = client.app[STATE].broker
    base = str(client.make_url(f"/api/v1/rooms/{room}/logs"))
    total = 300
    async with aiohttp.ClientSession() as http:
        followers = [Follower(http, base, auth()) for _ in range(5)]
        async with background(*(f.run(total, timeout=60) for f in followers)) as tasks:
            async with asyncio.timeout(10):
                await asyncio.gather(*(f.ready.wait() for f in followers))
            for i in range(total):
                if i in (100, 200):
                    # Cut the subscription only once it is back from the previous cut.
                    async with asyncio.timeout(10):
                        await broker.wait_live()
                    killed = redis_server.cli("CLIENT", "KILL", "TYPE", "pubsub")
                    assert int(killed) >= 1
                url = f"/api/v1/rooms/{room}/logs"
                r = await client.post(url, json=sample_log(i), headers=auth())
                assert r.status == 202
            await asyncio.gather(*tasks)
    expected = [f"log {i}" for i in range(total)]
    for f in followers:
        assert f.messages() == expected
        assert f.connects == 1, "the streams themselves stayed open"
    reconnects = client.app[STATE].metrics.broker_reconnects._value.get()
    assert reconnects >= 2


async def test_a_reader_that_stalls_then_reads_again_ends_with_every_log(
    make_client: MakeClient, broker_kind: str, room: str
) -> None:
    client = await make_client(redis=broker_kind == "redis", subscriber_buffer=8)
    base = str(client.make_url(f"/api/v1/rooms/{room}/logs"))
    total = 120
    big = "x" * 60_000  # large logs fill the socket buffers quickly
    stalled = asyncio.Event()
    release = asyncio.Event()

    async def pause() -> None:
        if not stalled.is_set():
            stalled.set()
            await release.wait()

    async with aiohttp.ClientSession() as http:
        follower = Follower(http, base, auth())
        async with background(follower.run(total, pause=pause, timeout=90)) as (task,):
            async with asyncio.timeout(10):
                await follower.ready.wait()
            for i in range(total):
                log = sample_log(i, metadata={"blob": big})
                r = await client.post(f"/api/v1/rooms/{room}/logs", json=log, headers=auth())
                assert r.status == 202
            assert stalled.is_set()
            release.set()
            await task
    assert follower.messages() == [f"log {i}" for i in range(total)]
    assert follower.connects >= 2, "the stalled stream was closed as a slow consumer"
    assert client.app is not None
    assert client.app[STATE].metrics.slow_consumers._value.get() >= 1
