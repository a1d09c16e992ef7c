"""What every broker does behind one interface, run against each kind (`broker_kind`: memory,
and redis on the private redis-server in both SUBSCRIBE_MODEs); then the one place the kinds
differ, how exactly history is bounded."""

from __future__ import annotations

import itertools
import re
import time

import orjson

from service.broker import Window
from service.ids import parse_id
from tests.support.brokers import StartBroker, logs, receive, written
from tests.support.servers import RedisServer

STREAM_ID = re.compile(r"[0-9]+-[0-9]+")


# -- both brokers ----------------------------------------------------------------------------------


async def test_publish_returns_monotonic_stream_ids(start_kind: StartBroker, room: str) -> None:
    run = await start_kind()
    ids: list[str] = []
    for batch in range(5):
        ids += await run.broker.publish(room, logs(20, batch * 20))
    assert len(ids) == 100
    assert all(STREAM_ID.fullmatch(i) for i in ids)
    keys = [key for key in map(parse_id, ids) if key is not None]
    assert len(keys) == len(ids)
    assert all(a < b for a, b in itertools.pairwise(keys))  # strictly increasing
    now_ms = time.time_ns() // 1_000_000
    assert abs(keys[0][0] - now_ms) < 60_000  # `<ms>` is wall-clock milliseconds


async def test_publish_delivers_live_with_ids(start_kind: StartBroker, room: str) -> None:
    run = await start_kind()
    sub = run.watch(room)
    other = run.watch(room + "-other")
    await run.broker.listening([room, room + "-other"])  # as a stream does before its replay
    data = logs(5)
    ids = await run.broker.publish(room, data)
    events = await receive(sub, 5)
    assert [e.last_event_id for e in events] == ids
    assert [e.event for e in events] == ["log"] * 5
    assert [orjson.loads(e.data) for e in events] == [orjson.loads(d) for d in data]
    assert written(other).writes == []


async def test_history_and_last_are_oldest_first(start_kind: StartBroker, room: str) -> None:
    run = await start_kind()
    data = logs(10)
    ids = await run.broker.publish(room, data)
    everything = list(zip(ids, data, strict=True))
    broker = run.broker

    assert await broker.history(room, None, 100) == everything
    assert await broker.history(room, None, 3) == everything[:3]
    assert await broker.history(room, ids[3], 4) == everything[4:8]
    assert await broker.history(room, ids[8], 100) == everything[9:]
    assert await broker.history(room, ids[-1], 100) == []
    assert await broker.last(room, 3) == everything[-3:]
    assert await broker.last(room, 100) == everything
    assert await broker.last(room, 0) == []
    assert await broker.history(room + "-none", None, 10) == []
    assert await broker.last(room + "-none", 10) == []


async def test_window_of_an_empty_room(start_kind: StartBroker, room: str) -> None:
    run = await start_kind()
    assert await run.broker.window(room) == Window(None, None, trimmed=False)
    assert not await run.broker.room_exists(room)


async def test_window_spans_what_history_holds(start_kind: StartBroker, room: str) -> None:
    run = await start_kind()
    ids = await run.broker.publish(room, logs(4))
    window = await run.broker.window(room)
    assert window == Window(ids[0], ids[-1], trimmed=False)
    assert window.covers((0, 0))  # nothing ever dropped: any last id recovers


async def test_window_says_when_a_last_id_points_before_trimmed_logs(
    start_kind: StartBroker, room: str
) -> None:
    """`recovered` is false when Last-Event-ID points before the oldest retained log."""
    run = await start_kind(history_max=5)
    first = await run.broker.publish(room, logs(3))
    before = await run.broker.window(room)
    assert not before.trimmed
    assert before.covers((0, 0))
    ids = list(first)
    for batch in range(7):  # enough for Redis' MAXLEN ~ to drop whole stream nodes
        ids += await run.broker.publish(room, logs(50, batch * 50))
    held = await run.broker.history(room, None, 1000)
    window = await run.broker.window(room)
    assert window.trimmed
    assert window.oldest == held[0][0]
    assert window.newest == ids[-1]
    keys = [key for key in map(parse_id, ids) if key is not None]
    oldest = parse_id(held[0][0])
    assert oldest is not None
    assert not window.covers(keys[0])  # that client lost logs: the stream sends a gap
    assert not window.covers(keys[ids.index(held[0][0]) - 1])
    assert window.covers(oldest)
    assert window.covers(keys[-1])


async def test_resume_reads_what_window_and_history_read(
    start_kind: StartBroker, room: str
) -> None:
    """A resume's one read (the Redis broker's script) answers what the two reads would."""
    run = await start_kind(history_max=5)
    broker = run.broker
    assert await broker.resume(room, "0-0", 100) == (Window(None, None, trimmed=False), [])
    ids = await broker.publish(room, logs(3))
    both = (await broker.window(room), await broker.history(room, ids[0], 100))
    assert both[1] == list(zip(ids[1:], logs(3)[1:], strict=True))
    assert await broker.resume(room, ids[0], 100) == both
    assert await broker.resume(room, ids[-1], 100) == (both[0], [])
    assert await broker.resume(room, "18446744073709551615-18446744073709551615", 1) == (
        both[0],
        [],
    )
    for batch in range(7):  # past the bound: trimmed, and the first ids gone
        ids += await broker.publish(room, logs(50, batch * 50))
    trimmed = await broker.window(room)
    assert trimmed.trimmed
    for after, limit in ((ids[0], 100), (ids[-3], 100), (ids[-10], 4), ("0-0", 2)):
        assert await broker.resume(room, after, limit) == (
            trimmed,
            await broker.history(room, after, limit),
        )


# -- how history is bounded: exactly in memory, by whole stream nodes in Redis ---------------------


async def test_memory_history_never_holds_more_than_history_max(
    start_broker: StartBroker, room: str
) -> None:
    run = await start_broker(history_max=5)
    broker = run.broker
    ids: list[str] = []
    for batch in range(4):
        ids += await broker.publish(room, logs(3, batch * 3))
        held = await broker.history(room, None, 1000)
        assert len(held) <= 5
        assert [i for i, _ in held] == ids[-5:]
    ids += await broker.publish(room, logs(12, 100))  # one batch larger than the bound
    held = await broker.history(room, None, 1000)
    assert [i for i, _ in held] == ids[-5:]
    assert await broker.last(room, 1000) == held
    window = await broker.window(room)
    assert window == Window(ids[-5], ids[-1], trimmed=True)


async def test_redis_history_is_bounded_by_approximate_maxlen(
    start_broker: StartBroker, redis_server: RedisServer, room: str
) -> None:
    """`XADD MAXLEN ~ N` trims whole stream nodes: bounded by N plus one node, not exactly N."""
    run = await start_broker(redis_url=redis_server.url, history_max=5)
    node = int(redis_server.cli("CONFIG", "GET", "stream-node-max-entries").split()[1])
    ids: list[str] = []
    for batch in range(7):
        ids += await run.broker.publish(room, logs(50, batch * 50))
    held = await run.broker.history(room, None, 1000)
    assert len(ids) == 350
    assert 5 <= len(held) <= 5 + node
    assert len(held) < len(ids)  # trimming happened
    assert [i for i, _ in held] == ids[-len(held) :]  # the newest are kept, in order
    window = await run.broker.window(room)
    assert window.oldest == held[0][0]
    assert window.newest == ids[-1]
