"""Issue 11, items 5 and 14, on real Redis: a plain `PUBLISH` is stored once and delivered with
its stream id (replayable, in order), and cannot pass off an id of its own.

At 5c0ddd2 a plain log was live only (no `id:`, absent from history), an id-shaped first field
was dropped as an old envelope, and a forged envelope 30 minutes ahead hid every real log.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import redis.asyncio as aioredis

from service.broker.keys import PLAIN
from service.broker.redis import RedisBroker
from service.state import STATE
from tests.support.factories import Client, MakeClient, auth, sample_log
from tests.support.servers import RedisServer
from tests.support.sse import SSEStream


@contextlib.asynccontextmanager
async def _live(client: Client, room: str) -> AsyncIterator[SSEStream]:
    """A stream of `room`, past its `connected` event: live from here on."""
    async with client.get(f"/api/v1/rooms/{room}/logs", headers=auth()) as resp:
        sse = SSEStream(resp)
        assert (await sse.next()).event == "connected"
        yield sse


def _value(client_app: object, name: str, labels: dict[str, str] | None = None) -> float:
    state = client_app[STATE]  # type: ignore[index]
    return state.metrics.registry.get_sample_value(name, labels) or 0.0


async def _history(client: object, room: str) -> list[dict[str, object]]:
    r = await client.get(f"/api/v1/rooms/{room}/logs/history?limit=1000", headers=auth())  # type: ignore[attr-defined]
    assert r.status == 200
    logs: list[dict[str, object]] = (await r.json())["logs"]
    return logs


async def test_a_plain_publish_is_stored_and_delivered_with_its_id(
    make_client: MakeClient, redis_server: RedisServer, room: str
) -> None:
    client = await make_client(redis=True)
    redis = aioredis.Redis.from_url(redis_server.url)
    try:
        async with _live(client, room) as sse:
            # Mixed with the service's own publishes: one order, ids increasing.
            await redis.publish(PLAIN.channel(room), orjson.dumps(sample_log(0)))
            r = await client.post(f"/api/v1/rooms/{room}/logs", json=sample_log(1), headers=auth())
            assert r.status == 202
            await redis.publish(PLAIN.channel(room), orjson.dumps(sample_log(2)))
            events = await sse.collect(3)
        assert [e.json()["message"] for e in events] == ["log 0", "log 1", "log 2"]
        ids = [e.last_event_id for e in events]
        assert all(ids)
        assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
        stored = await _history(client, room)
        assert [(h["id"], h["message"]) for h in stored] == [
            (i, f"log {n}") for n, i in enumerate(ids)
        ]
        # A reconnect after the first gets the two others from history, once each.
        headers = {**auth(), "Last-Event-ID": ids[0]}
        async with client.get(f"/api/v1/rooms/{room}/logs", headers=headers) as resp:
            sse = SSEStream(resp)
            replayed = await sse.collect(2)
        assert [e.last_event_id for e in replayed] == ids[1:]
        assert _value(client.app, "roomlogs_plain_logs_total", {"outcome": "stored"}) == 2
    finally:
        await redis.aclose()


async def test_a_plain_publish_to_an_unwatched_room_is_kept_for_a_page_opened_later(
    make_client: MakeClient, redis_server: RedisServer, room: str
) -> None:
    client = await make_client(redis=True)
    redis = aioredis.Redis.from_url(redis_server.url)
    try:
        for i in range(3):
            await redis.publish(PLAIN.channel(room), orjson.dumps(sample_log(i)))
        seen, last = 0, "0"
        async with asyncio.timeout(10):
            while seen < 3:  # the gateway's writes, awaited with a blocking read
                rows: Any = await redis.xread({PLAIN.history(room): last}, block=5000)
                for _, entries in rows:
                    seen += len(entries)
                    last = entries[-1][0]
        async with client.get(f"/api/v1/rooms/{room}/logs?history=10", headers=auth()) as resp:
            events = await SSEStream(resp).collect(3)
        assert [e.json()["message"] for e in events] == ["log 0", "log 1", "log 2"]
        assert all(e.last_event_id for e in events)
    finally:
        await redis.aclose()


async def test_several_gateways_store_each_plain_log_once_identical_ones_included(
    make_client: MakeClient, redis_server: RedisServer, room: str
) -> None:
    """Three gateways (three apps, three subscriptions) receive every plain log; the room's
    history holds each once, and the same text published twice is two logs."""
    gateways = [await make_client(redis=True) for _ in range(3)]
    redis = aioredis.Redis.from_url(redis_server.url)
    same = orjson.dumps({**sample_log(0), "message": "the same line"})
    payloads = [orjson.dumps(sample_log(i)) for i in range(1, 40)]
    payloads[10:10] = [same, same]
    payloads.append(same)
    try:
        async with _live(gateways[0], room) as sse:
            async with redis.pipeline(transaction=False) as pipe:
                for p in payloads:
                    pipe.publish(PLAIN.channel(room), p)
                await pipe.execute()
            events = await sse.collect(len(payloads))
        assert [e.data.encode() for e in events] == payloads  # in order, each once
        async with asyncio.timeout(10):
            for g in gateways:  # every gateway has run its scripts
                broker = g.app[STATE].broker
                assert isinstance(broker, RedisBroker)
                await broker.plain_drained()
        assert await redis.xlen(PLAIN.history(room)) == len(payloads)
        stored = sum(
            _value(g.app, "roomlogs_plain_logs_total", {"outcome": "stored"}) for g in gateways
        )
        claimed = sum(
            _value(g.app, "roomlogs_plain_logs_total", {"outcome": "claimed"}) for g in gateways
        )
        assert (stored, claimed) == (len(payloads), 2 * len(payloads))
    finally:
        await redis.aclose()


async def test_a_forged_envelope_is_refused_counted_and_hides_nothing(
    make_client: MakeClient, redis_server: RedisServer, room: str
) -> None:
    """Item 5: an envelope-shaped payload 30 minutes ahead with a made-up tag is refused; the
    real logs after it arrive, and the stream's position stays a real id."""
    client = await make_client(redis=True)
    redis = aioredis.Redis.from_url(redis_server.url)
    ahead = f"{int(time.time() * 1000) + 30 * 60_000}-0"
    forged = b'{"id":"%b","rlmac":"0123456789abcdef0123",%b' % (
        ahead.encode(),
        orjson.dumps(sample_log(0))[1:],
    )
    try:
        async with _live(client, room) as sse:
            await redis.publish(PLAIN.channel(room), forged)
            r = await client.post(f"/api/v1/rooms/{room}/logs", json=sample_log(1), headers=auth())
            assert r.status == 202
            [event] = await sse.collect(1)
        assert event.json()["message"] == "log 1"
        assert event.last_event_id == (await r.json())["ids"][0]
        forgeries = {"reason": "forged"}
        assert _value(client.app, "roomlogs_broker_invalid_messages_total", forgeries) == 1
        assert [h["message"] for h in await _history(client, room)] == ["log 1"]
    finally:
        await redis.aclose()


async def test_an_ordinary_log_whose_first_field_is_id_shaped_is_a_log(
    make_client: MakeClient, redis_server: RedisServer, room: str
) -> None:
    """Item 5: `{"id":"20240101-7", …}` was dropped silently as an old envelope."""
    client = await make_client(redis=True)
    redis = aioredis.Redis.from_url(redis_server.url)
    payload = b'{"id":"20240101-7","agentType":"deploy","level":"info","message":"job 7 done"}'
    try:
        async with _live(client, room) as sse:
            await redis.publish(PLAIN.channel(room), payload)
            [event] = await sse.collect(1)
        log = event.json()
        assert (log["id"], log["message"]) == ("20240101-7", "job 7 done")  # its own field
        assert event.last_event_id
        assert event.last_event_id != "20240101-7"
    finally:
        await redis.aclose()


async def test_a_plain_log_is_stored_after_redis_lost_its_scripts(
    make_client: MakeClient, redis_server: RedisServer, room: str
) -> None:
    """The gateway runs PLAIN_SCRIPT by its sha in one round trip (no `SCRIPT EXISTS` first):
    after a `SCRIPT FLUSH` (a restarted Redis) it loads it again and loses nothing."""
    client = await make_client(redis=True)
    redis = aioredis.Redis.from_url(redis_server.url)
    try:
        async with _live(client, room) as sse:
            await redis.publish(PLAIN.channel(room), orjson.dumps(sample_log(0)))
            [first] = await sse.collect(1)
            await redis.script_flush()
            await redis.publish(PLAIN.channel(room), orjson.dumps(sample_log(1)))
            [second] = await sse.collect(1)
        assert (first.json()["message"], second.json()["message"]) == ("log 0", "log 1")
        assert first.last_event_id
        assert second.last_event_id
        assert await redis.xlen(PLAIN.history(room)) == 2
    finally:
        await redis.aclose()
