"""SUBSCRIBE_MODE=rooms on a real redis-server: `SUBSCRIBE room:R:logs` exactly for the rooms with
a local stream, let go `UNSUBSCRIBE_LINGER` after the last one left (not when a room is reopened
within it), no gap and no duplicate between a stream's replay and live while its room is busy,
every room back after the subscription connection is killed with what was published meanwhile
delivered once, and plain PUBLISH logs stored once whether or not a stream watches the room
(the keepers, broker/keeper.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
import pytest
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub

from service.broker import BrokerUnavailable, _per_room
from service.broker import redis as redis_broker
from service.broker.redis import RedisBroker
from service.ids import parse_id
from service.settings import Settings
from service.state import STATE
from service.subscriber import Subscriber
from tests.support.aio import background, poll_until
from tests.support.brokers import Running, StartBroker, logs, receive
from tests.support.factories import MakeClient, auth, sample_log
from tests.support.servers import RedisServer
from tests.support.sse import SSEStream


@pytest.fixture
async def probe(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A plain client of the session's redis-server, to ask it what it holds."""
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def _channels(client: aioredis.Redis, room: str) -> set[str]:
    """The classic channels of this test's rooms that some client subscribes."""
    names = await client.pubsub_channels(f"room:{room}*")
    return {name.decode() if isinstance(name, bytes) else name for name in names}


async def _unsubscribes(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_unsubscribe", {}).get("calls", 0))


async def _rooms_broker(start_broker: StartBroker, url: str, **kw: object) -> Running:
    return await start_broker(redis_url=url, subscribe_mode="rooms", **kw)


def _broker(run: Running) -> RedisBroker:
    assert isinstance(run.broker, RedisBroker)
    return run.broker


async def test_pubsub_channels_are_exactly_the_watched_rooms(
    start_broker: StartBroker, redis_server: RedisServer, probe: aioredis.Redis, room: str
) -> None:
    run = await _rooms_broker(start_broker, redis_server.url)
    a, b, unwatched = f"{room}-a", f"{room}-b", f"{room}-c"
    assert await _channels(probe, room) == set()
    sub_a, sub_b = run.watch(a), run.watch(b)
    run.watch(a)  # a second stream of a room: nothing more to subscribe
    await run.broker.listening([a, b])
    assert await _channels(probe, room) == {f"room:{a}:logs", f"room:{b}:logs"}
    assert _broker(run).subscribed_rooms == 2
    # Live delivery is on for exactly those rooms.
    await run.broker.publish(unwatched, logs(1))
    ids_a = await run.broker.publish(a, logs(2))
    ids_b = await run.broker.publish(b, logs(1))
    assert [e.last_event_id for e in await receive(sub_a, 2)] == ids_a
    assert [e.last_event_id for e in await receive(sub_b, 1)] == ids_b


async def test_a_room_is_unsubscribed_after_the_linger_unless_reopened_within_it(
    start_broker: StartBroker, redis_server: RedisServer, probe: aioredis.Redis, room: str
) -> None:
    linger = 0.3
    run = await _rooms_broker(start_broker, redis_server.url, unsubscribe_linger=linger)
    gone, kept = f"{room}-gone", f"{room}-kept"
    sub_gone, sub_kept = run.watch(gone), run.watch(kept)
    await run.broker.listening([gone, kept])
    before = await _unsubscribes(probe)

    closed = time.monotonic()
    run.hub.remove(sub_gone)
    run.hub.remove(sub_kept)
    reopened = run.watch(kept)  # within the linger: stays subscribed, nothing sent
    assert await _channels(probe, room) == {f"room:{gone}:logs", f"room:{kept}:logs"}

    async def unsubscribed() -> bool:
        return f"room:{gone}:logs" not in await _channels(probe, room)

    await poll_until(unsubscribed, timeout=5, interval=0.02)
    assert time.monotonic() - closed >= linger - 0.05  # not before the linger
    await asyncio.sleep(linger)  # an absence is asserted: past the kept room's would-be linger
    assert await _channels(probe, room) == {f"room:{kept}:logs"}
    assert await _unsubscribes(probe) - before == 1  # the gone room's, never the kept one's
    ids = await run.broker.publish(kept, logs(1))
    assert [e.last_event_id for e in await receive(reopened, 1)] == ids


async def test_a_stream_of_a_busy_room_gets_no_gap_and_no_duplicate(
    make_client: MakeClient, room: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its room subscribed before the replay is read (`listening`), a publisher writing all the
    while: replay then live is exactly the room's history, in order. The SUBSCRIBE is made slow
    to go out, so that a replay read before its confirmation would miss logs."""
    send = _per_room.send

    async def slow_send(pubsub: PubSub, *args: str | bytes) -> None:
        if args[0] == "SUBSCRIBE":
            await asyncio.sleep(0.05)
        await send(pubsub, *args)

    monkeypatch.setattr(_per_room, "send", slow_send)
    client = await make_client(redis=True, subscribe_mode="rooms")
    broker = client.app[STATE].broker
    published: list[str] = []
    go_on = asyncio.Event()
    go_on.set()

    async def publisher() -> None:
        while go_on.is_set():
            published.extend(await broker.publish(room, logs(1, len(published))))

    def at_least(count: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return len(published) >= count

        return check

    async with background(publisher()) as [task]:
        await poll_until(at_least(30), timeout=10, interval=0.005)
        async with client.get(f"/api/v1/rooms/{room}/logs?history=1000", headers=auth()) as resp:
            sse = SSEStream(resp)
            assert (await sse.next()).event == "connected"
            await poll_until(at_least(len(published) + 60), timeout=10, interval=0.005)
            go_on.clear()
            async with asyncio.timeout(10):
                await task  # its last publish answered, no other begun
            history = [stream_id for stream_id, _ in await broker.history(room, None, 1000)]
            events = await sse.collect(len(history))
            metrics = await (await client.get("/metrics")).text()
    assert "roomlogs_redis_subscribed_rooms 1.0" in metrics
    assert history == published
    assert [e.id for e in events] == history  # contiguous, strictly increasing, each once


async def test_a_room_reopened_while_its_unsubscribe_is_on_the_way_is_caught_up(
    start_broker: StartBroker, redis_server: RedisServer, room: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Linger 0: a stream reopens the room just as its UNSUBSCRIBE goes out (so `listening`
    returns at once, the room still confirmed), and logs are published once Redis has ended
    the subscription, before the new SUBSCRIBE lands (made slow): they come from history."""
    send = _per_room.send
    reopened: list[Subscriber] = []

    async def crossing_send(pubsub: PubSub, *args: str | bytes) -> None:
        if args[0] == "UNSUBSCRIBE" and not reopened:
            reopened.append(run.watch(room))  # between `take` and the wire
        elif args[0] == "SUBSCRIBE" and reopened:
            await asyncio.sleep(0.3)
        await send(pubsub, *args)

    monkeypatch.setattr(_per_room, "send", crossing_send)
    run = await _rooms_broker(start_broker, redis_server.url, unsubscribe_linger=0)
    interest = _broker(run)._interest
    first = run.watch(room)
    await run.broker.listening([room])
    before = await run.broker.publish(room, logs(2))
    assert [e.last_event_id for e in await receive(first, 2)] == before
    run.hub.remove(first)

    async def unsubscribed() -> bool:
        return bool(reopened) and room not in interest.confirmed

    await poll_until(unsubscribed, timeout=5, interval=0.005)
    [again] = reopened
    newest = parse_id(before[-1])
    assert newest is not None
    run.delivery.started(room, newest)  # as its replay does: it served up to there
    missed = await run.broker.publish(room, logs(5))
    assert room not in interest.confirmed  # published while unsubscribed
    assert [e.last_event_id for e in await receive(again, 5)] == missed
    await _nothing_more(again)


async def test_after_the_subscription_is_killed_every_room_is_back_and_caught_up_once(
    start_broker: StartBroker, own_redis: RedisServer, room: str
) -> None:
    run = await _rooms_broker(start_broker, own_redis.url)
    rooms = [f"{room}-{n}" for n in range(3)]
    subs = [run.watch(r) for r in rooms]
    await run.broker.listening(rooms)
    first = await run.broker.publish(rooms[0], logs(3))
    assert [e.last_event_id for e in await receive(subs[0], 3)] == first

    own_redis.cli("CLIENT", "KILL", "TYPE", "pubsub")
    during = {r: await run.broker.publish(r, logs(10)) for r in rooms}  # mostly unheard

    async def reconnected() -> bool:
        count = run.metrics.registry.get_sample_value("roomlogs_broker_reconnects_total")
        return bool(count) and run.broker.ready

    await poll_until(reconnected, timeout=10, interval=0.02)
    after = {r: await run.broker.publish(r, logs(2)) for r in rooms}
    for r, sub in zip(rooms, subs, strict=True):
        got = [e.last_event_id for e in await receive(sub, 12)]
        assert got == during[r] + after[r]
    client = aioredis.Redis.from_url(own_redis.url)
    try:
        assert await _channels(client, room) == {f"room:{r}:logs" for r in rooms}
    finally:
        await client.aclose()
    for sub in subs:
        await _nothing_more(sub)


async def test_a_stream_is_refused_when_redis_never_confirms_its_room(
    start_broker: StartBroker, own_redis: RedisServer, room: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_per_room, "LISTEN_TIMEOUT", 0.3)
    run = await _rooms_broker(start_broker, own_redis.url)
    own_redis.pause()  # a stalled Redis: the SUBSCRIBE goes out, no answer comes back
    try:
        run.watch(room)
        with pytest.raises(BrokerUnavailable):
            await run.broker.listening([room])
    finally:
        own_redis.resume()
    await run.broker.listening([room])  # answered once Redis is back


# -- plain PUBLISH ---------------------------------------------------------------------------------


async def _keeping(run: Running) -> None:
    keeper = _broker(run)._keeper
    assert keeper is not None
    async with asyncio.timeout(10):
        await keeper.held.wait()


async def test_plain_publish_is_stored_once_whether_or_not_a_stream_watches(
    start_broker: StartBroker, own_redis: RedisServer, room: str
) -> None:
    """Two gateways (both keepers: PLAIN_KEEPERS=2, the default), one watching a room: the same
    plain payload sent many times is that many logs, stored once each, in an unwatched room
    and in the watched one (heard there by the watcher's room connection and by both
    keepers)."""
    assert Settings().plain_keepers == 2
    one = await _rooms_broker(start_broker, own_redis.url)
    two = await _rooms_broker(start_broker, own_redis.url)
    await _keeping(one)
    await _keeping(two)
    watched, unwatched = f"{room}-w", f"{room}-u"
    sub = one.watch(watched)
    await one.broker.listening([watched])
    payload = orjson.dumps(sample_log(7, message="plain"))
    client = aioredis.Redis.from_url(own_redis.url)
    try:
        for _ in range(5):
            await client.publish(f"room:{watched}:logs", payload)
            await client.publish(f"room:{unwatched}:logs", payload)
    finally:
        await client.aclose()
    events = await receive(sub, 5)
    assert all(e.last_event_id for e in events)
    for run in (one, two):
        await run.broker.plain_drained()  # type: ignore[attr-defined]
    stored = await one.broker.history(watched, None, 100)
    assert [stream_id for stream_id, _ in stored] == [e.last_event_id for e in events]
    assert len(await one.broker.history(unwatched, None, 100)) == 5
    await _nothing_more(sub)


async def _nothing_more(sub: Subscriber) -> None:
    """No further event within a short while: nothing was delivered twice."""
    with contextlib.suppress(TimeoutError):
        extra = await receive(sub, 1, timeout=0.3)
        raise AssertionError(f"delivered once more: {extra}")


async def test_a_stalled_redis_is_left_by_the_probe_and_the_rooms_come_back(
    start_broker: StartBroker, own_redis: RedisServer, room: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGSTOP: the socket stays open and says nothing. The liveness probe gives the connection
    up, and once Redis answers again every room is subscribed again and delivers once."""
    monkeypatch.setattr(redis_broker, "PROBE_IDLE", 0.2)
    monkeypatch.setattr(redis_broker, "PROBE_TIMEOUT", 0.3)
    run = await _rooms_broker(start_broker, own_redis.url)
    rooms = [f"{room}-{n}" for n in range(2)]
    subs = [run.watch(r) for r in rooms]
    await run.broker.listening(rooms)

    def losses() -> float:
        value = run.metrics.registry.get_sample_value(
            "roomlogs_broker_subscription_losses_total", {"kind": "stalled"}
        )
        return value or 0.0

    own_redis.pause()
    try:

        async def stalled() -> bool:
            return losses() >= 1

        await poll_until(stalled, timeout=10, interval=0.02)
        assert not run.broker.ready
    finally:
        own_redis.resume()

    async def live() -> bool:
        return run.broker.ready

    await poll_until(live, timeout=10, interval=0.02)
    for r, sub in zip(rooms, subs, strict=True):
        ids = await run.broker.publish(r, logs(2))
        assert [e.last_event_id for e in await receive(sub, 2)] == ids
        await _nothing_more(sub)
    client = aioredis.Redis.from_url(own_redis.url)
    try:
        assert await _channels(client, room) == {f"room:{r}:logs" for r in rooms}
    finally:
        await client.aclose()


async def test_plain_keepers_bounds_how_many_gateways_keep(
    start_broker: StartBroker, own_redis: RedisServer
) -> None:
    """PLAIN_KEEPERS=1: of two gateways one holds the lease and the other stays a plain
    per-room subscriber (Redis sends each log to one keeper); 0: no keeper at all."""
    one = await _rooms_broker(start_broker, own_redis.url, plain_keepers=1)
    two = await _rooms_broker(start_broker, own_redis.url, plain_keepers=1)
    keepers = [_broker(one)._keeper, _broker(two)._keeper]
    assert all(k is not None for k in keepers)
    async with asyncio.timeout(10):
        for k in keepers:
            assert k is not None
            await k.settled.wait()
    assert sorted(k.holding or "" for k in keepers if k is not None) == [
        "",
        "roomlogs:plain-keeper:0",
    ]
    none = await _rooms_broker(start_broker, own_redis.url, plain_keepers=0)
    assert _broker(none)._keeper is None
