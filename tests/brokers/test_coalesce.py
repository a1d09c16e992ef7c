"""The Redis broker's publishes of one loop turn, sent in one pipeline (broker/coalesce.py):
each request is still answered on its own (its ids, its error), one room's order is the order
of its calls, and what fails the whole pipeline fails each call as a lone command would."""

from __future__ import annotations

import asyncio

import orjson
import pytest
import redis.asyncio as aioredis

from service.broker import BrokerUnavailable, KeyReused, PublishOutcomeUnknown
from service.broker.coalesce import IN_FLIGHT
from service.broker.script import Published
from tests.support.brokers import StartBroker
from tests.support.factories import ids_in_order, sample_log
from tests.support.servers import RedisServer


def _log(i: int) -> bytes:
    return orjson.dumps(sample_log(i))


async def test_concurrent_publishes_get_their_own_ids_in_each_rooms_order(
    redis_server: RedisServer, start_broker: StartBroker, room: str
) -> None:
    running = await start_broker(redis_url=redis_server.url)
    broker = running.broker
    rooms = [f"{room}-{r}" for r in range(3)]
    calls = [(rooms[i % 3], [_log(i), _log(i + 100)], f"key-{i}") for i in range(30)]
    results = await asyncio.gather(
        *(broker.publish_once(r, logs, key, f"seen-{key}") for r, logs, key in calls)
    )
    for r in rooms:
        mine = [p for (call_room, _, _), p in zip(calls, results, strict=True) if call_room == r]
        ids = [i for p in mine for i in p.ids]
        assert all(len(p.ids) == 2 and not p.replayed for p in mine)
        assert ids_in_order(ids)  # the calls' order, each call's logs together
        stored = await broker.history(r, None, 1000)
        assert [i for i, _ in stored] == ids
        logs = [log for (call_room, batch, _) in calls if call_room == r for log in batch]
        assert [data for _, data in stored] == logs


async def test_a_reused_key_fails_only_its_own_call(
    redis_server: RedisServer, start_broker: StartBroker, room: str
) -> None:
    broker = (await start_broker(redis_url=redis_server.url)).broker
    first = await broker.publish_once(room, [_log(0)], "used", "seen-a")
    outcomes = await asyncio.gather(
        broker.publish_once(room, [_log(1)], "used", "seen-b"),  # other logs: refused
        broker.publish_once(room, [_log(0)], "used", "seen-a"),  # the same: replayed
        broker.publish_once(room, [_log(2)], "fresh", "seen-c"),
        return_exceptions=True,
    )
    reused, replayed, fresh = outcomes
    assert isinstance(reused, KeyReused)
    assert isinstance(replayed, Published)
    assert replayed.replayed
    assert replayed.ids == first.ids
    assert isinstance(fresh, Published)
    assert not fresh.replayed
    assert len(fresh.ids) == 1


async def test_publishes_after_redis_lost_its_scripts_are_stored_once(
    redis_server: RedisServer, start_broker: StartBroker, room: str
) -> None:
    """NOSCRIPT ran nothing: the script is loaded and those calls are sent again."""
    broker = (await start_broker(redis_url=redis_server.url)).broker
    await broker.publish_once(room, [_log(0)], "k-0", "s-0")
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        await client.script_flush()
        results = await asyncio.gather(
            *(broker.publish_once(room, [_log(i)], f"k-{i}", f"s-{i}") for i in range(1, 6))
        )
        assert all(len(p.ids) == 1 and not p.replayed for p in results)
        assert await client.xlen(f"room:{room}:history") == 6
    finally:
        await client.aclose()


async def test_a_pipeline_without_redis_fails_every_call_as_not_stored(
    own_redis: RedisServer, start_broker: StartBroker, room: str
) -> None:
    """No connection to be had: nothing was sent, so every call of the pipeline is a 503."""
    broker = (await start_broker(redis_url=own_redis.url)).broker
    own_redis.stop()
    outcomes = await asyncio.gather(
        *(broker.publish_once(room, [_log(i)], f"k-{i}", f"s-{i}") for i in range(3)),
        return_exceptions=True,
    )
    assert all(isinstance(o, BrokerUnavailable) for o in outcomes)


@pytest.mark.parametrize("calls", [1, 300])
async def test_one_call_or_more_than_a_pipeline_holds(
    redis_server: RedisServer, start_broker: StartBroker, room: str, calls: int
) -> None:
    broker = (await start_broker(redis_url=redis_server.url)).broker
    results = await asyncio.gather(*(broker.publish(room, [_log(i)]) for i in range(calls)))
    ids = [i for r in results for i in r]
    assert len(ids) == calls
    assert ids_in_order(ids)


async def test_a_call_that_redis_refuses_fails_alone_and_the_next_calls_run(
    redis_server: RedisServer, start_broker: StartBroker, room: str
) -> None:
    """One script call carries the turn's publishes: a command refused in one (here its
    history key holds a string) is that call's error, and the calls after it are stored."""
    broker = (await start_broker(redis_url=redis_server.url)).broker
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        await client.set(f"room:{room}-bad:history", "not a stream")
        outcomes = await asyncio.gather(
            broker.publish_once(f"{room}-a", [_log(0)], "k-a", "s-a"),
            broker.publish_once(f"{room}-bad", [_log(1)], "k-bad", "s-bad"),
            broker.publish_once(f"{room}-b", [_log(2)], "k-b", "s-b"),
            return_exceptions=True,
        )
        first, refused, after = outcomes
        # Refused inside the script, which Redis does not roll back: said to be unknown, as
        # a lone call's refusal is.
        assert isinstance(refused, PublishOutcomeUnknown)
        assert "WRONGTYPE" in str(refused)
        assert isinstance(first, Published)
        assert isinstance(after, Published)
        assert await client.xlen(f"room:{room}-a:history") == 1
        assert await client.xlen(f"room:{room}-b:history") == 1
    finally:
        await client.aclose()


async def test_a_turn_of_big_batches_is_cut_into_several_script_calls_in_order(
    redis_server: RedisServer, start_broker: StartBroker, room: str
) -> None:
    """40 calls of 100 logs (beyond one script call's MAX_ARGS): every log stored once, in
    the calls' order, each call told its own ids."""
    broker = (await start_broker(redis_url=redis_server.url, history_max=10_000)).broker
    batches = [[_log(100 * c + i) for i in range(100)] for c in range(40)]
    results = await asyncio.gather(*(broker.publish(room, logs) for logs in batches))
    assert [len(ids) for ids in results] == [100] * 40
    ids = [i for r in results for i in r]
    assert ids_in_order(ids)
    stored = await broker.history(room, None, 5000)
    assert [i for i, _ in stored] == ids
    assert [data for _, data in stored] == [log for logs in batches for log in logs]


async def test_concurrent_resumes_in_one_script_call_each_get_their_own_room(
    redis_server: RedisServer, start_broker: StartBroker, room: str
) -> None:
    """A storm's resumes of one loop turn share a script call (BATCH_RESUME_SCRIPT): each
    gets its own room's window and page, as a lone read gives them; a room without history
    is an empty window, not an error for the others."""
    broker = (await start_broker(redis_url=redis_server.url)).broker
    rooms = [f"{room}-{r}" for r in range(6)]
    for r, name in enumerate(rooms[:-1]):
        await broker.publish(name, [_log(100 * r + i) for i in range(r + 3)])
    alone = {name: await broker.window(name) for name in rooms}
    firsts = {name: (w.oldest or "0-0") for name, w in alone.items()}
    await broker.resume(rooms[0], firsts[rooms[0]], 2)  # Redis knows the script (no NOSCRIPT)
    before = _evalsha_calls(redis_server)
    together = await asyncio.gather(
        *(broker.resume(name, firsts[name], 2) for name in rooms for _ in range(3))
    )
    assert _evalsha_calls(redis_server) - before == 1
    for i, (window, page) in enumerate(together):
        name = rooms[i // 3]
        assert window == alone[name]
        expected = (await broker.history(name, firsts[name], 2)) if window.oldest else []
        assert page == expected


def _evalsha_calls(redis_server: RedisServer) -> int:
    return redis_server.calls().get("evalsha", 0)


async def test_publishes_made_while_in_flight_batches_are_full_go_together_in_the_next(
    own_redis: RedisServer, start_broker: StartBroker, room: str
) -> None:
    """At most IN_FLIGHT publish batches on the way: with Redis stalled, the first publishes
    of 21 made over 21 loop turns take a batch each, the rest go in one after them, each told
    its own id. (Batches on different connections have no order between them: concurrent
    requests have none; a client's next publish after an answer is always sent after.)"""
    broker = (await start_broker(redis_url=own_redis.url)).broker
    await broker.publish(room, [_log(0)])  # Redis knows the script (no NOSCRIPT)
    before = _evalsha_calls(own_redis)
    own_redis.pause()
    try:
        calls = []
        for i in range(21):
            calls.append(asyncio.ensure_future(broker.publish(room, [_log(1 + i)])))
            for _ in range(3):  # a loop turn each, and its batch sent
                await asyncio.sleep(0)
    finally:
        own_redis.resume()
    results = await asyncio.wait_for(asyncio.gather(*calls), 20)
    assert _evalsha_calls(own_redis) - before == IN_FLIGHT + 1
    assert all(len(r) == 1 for r in results)
    stored = dict(await broker.history(room, None, 100))
    assert [stored[i] for (i,) in results] == [_log(1 + i) for i in range(21)]


async def test_resumes_made_while_one_is_in_flight_go_together_in_the_next(
    own_redis: RedisServer, start_broker: StartBroker, room: str
) -> None:
    """Resumes, one batch on the way at a time: ten made over ten loop turns while the first
    waits on a stalled Redis are one script call after it, each with its own room's page."""
    broker = (await start_broker(redis_url=own_redis.url)).broker
    rooms = [f"{room}-{r}" for r in range(11)]
    for r, name in enumerate(rooms):
        await broker.publish(name, [_log(10 * r + i) for i in range(3)])
    starts = {name: (await broker.window(name)).oldest or "0-0" for name in rooms}
    await broker.resume(rooms[0], starts[rooms[0]], 5)  # Redis knows the script
    before = _evalsha_calls(own_redis)
    own_redis.pause()
    try:
        calls = []
        for name in rooms:
            calls.append(asyncio.ensure_future(broker.resume(name, starts[name], 5)))
            for _ in range(3):
                await asyncio.sleep(0)
    finally:
        own_redis.resume()
    results = await asyncio.wait_for(asyncio.gather(*calls), 20)
    assert _evalsha_calls(own_redis) - before == 2
    for name, (window, page) in zip(rooms, results, strict=True):
        assert window == await broker.window(name)
        assert page == await broker.history(name, starts[name], 5)
