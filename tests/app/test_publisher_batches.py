"""The `Publisher`'s batching (service/publisher_batches.py): what is emitted to a room while
its previous send is on the way goes in its next send, in emission order, each emit told its
own id; memory is bounded by `max_pending`, past which `emit` waits."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from service.publisher import Publisher, PublishError
from tests.support.factories import MakeClient, ids_in_order, token
from tests.support.servers import RedisServer


async def _history(url: str, room: str) -> list[tuple[str, bytes]]:
    client = aioredis.Redis.from_url(url)
    try:
        rows: Any = await client.xrange(f"room:{room}:history")
    finally:
        await client.aclose()
    return [(i.decode(), fields[b"log"]) for i, fields in rows]


async def test_concurrent_emits_over_redis_go_in_few_script_calls_in_emit_order(
    redis_server: RedisServer, room: str
) -> None:
    async with Publisher(redis_url=redis_server.url) as publisher:
        await publisher.emit(room, "warm-up")  # reads the envelope secret
        before = redis_server.calls().get("evalsha", 0)
        emits = [asyncio.ensure_future(publisher.emit(room, f"log {i}")) for i in range(250)]
        ids = await asyncio.gather(*emits)
        calls = redis_server.calls().get("evalsha", 0) - before
    assert ids_in_order(ids)
    assert calls <= 5  # 250 logs at most 100 per send: 3, whatever the timing
    stored = (await _history(redis_server.url, room))[1:]
    assert [i for i, _ in stored] == ids
    assert [f'"log {i}"'.encode() in data for i, (_, data) in enumerate(stored)] == [True] * 250


async def test_concurrent_emits_over_http_go_in_few_posts_each_told_its_own_id(
    make_client: MakeClient, redis_server: RedisServer, room: str
) -> None:
    client = await make_client(redis=True)
    base = str(client.make_url("/"))
    async with Publisher(url=base, token=token()) as publisher:
        emits = [asyncio.ensure_future(publisher.emit(room, f"log {i}")) for i in range(150)]
        ids = await asyncio.gather(*emits)
    assert ids_in_order(ids)
    stored = await _history(redis_server.url, room)
    assert [i for i, _ in stored] == ids
    assert [f'"log {i}"'.encode() in data for i, (_, data) in enumerate(stored)] == [True] * 150
    # One Idempotency-Key per POST: 150 logs at most 100 per POST.
    keys = redis_server.cli("--scan", "--pattern", f"room:{room}:publish:*").split()
    assert 2 <= len(keys) <= 5


async def test_a_refused_send_fails_every_emit_of_it_with_its_own_error(
    make_client: MakeClient, room: str
) -> None:
    client = await make_client()
    base = str(client.make_url("/"))
    async with Publisher(url=base, token=token(rooms=room, publish="elsewhere")) as publisher:
        outcomes = await asyncio.gather(
            *(publisher.emit(room, f"log {i}") for i in range(5)), return_exceptions=True
        )
    assert all(isinstance(o, PublishError) and "403 room_not_allowed" in str(o) for o in outcomes)
    assert len({id(o) for o in outcomes}) == 5


async def test_emits_past_max_pending_wait_and_are_sent_in_order_once_redis_answers(
    own_redis: RedisServer, room: str
) -> None:
    """Back-pressure: with Redis stalled, 10 logs are queued or on the way and the other
    emits wait; an emit whose caller gave up is stored all the same."""
    async with Publisher(redis_url=own_redis.url, max_pending=10) as publisher:
        await publisher.emit(room, "warm-up")
        own_redis.pause()
        try:
            emits = [asyncio.ensure_future(publisher.emit(room, f"log {i}")) for i in range(50)]
            for _ in range(5):  # let every emit run up to where it waits
                await asyncio.sleep(0)
            assert publisher.pending == 10
            assert not any(e.done() for e in emits)
            emits[3].cancel()
        finally:
            own_redis.resume()
        outcomes = await asyncio.wait_for(asyncio.gather(*emits, return_exceptions=True), 20)
    assert isinstance(outcomes[3], asyncio.CancelledError)
    ids = [o for o in outcomes if isinstance(o, str)]
    assert len(ids) == 49
    assert ids_in_order(ids)
    stored = (await _history(own_redis.url, room))[1:]
    assert len(stored) == 50  # the cancelled emit's log too
    assert [f'"log {i}"'.encode() in data for i, (_, data) in enumerate(stored)] == [True] * 50


@pytest.mark.parametrize("linger", [0.0, 0.005])
async def test_a_lone_emit_is_sent_on_its_own(
    redis_server: RedisServer, room: str, linger: float
) -> None:
    async with Publisher(redis_url=redis_server.url, linger=linger) as publisher:
        first = await publisher.emit(room, "one")
        second = await publisher.emit(room, "two")
    assert ids_in_order([first, second])
    assert [i for i, _ in await _history(redis_server.url, room)] == [first, second]
