"""Both brokers behind one interface, driven directly (memory, and a private redis-server).

Built the way `service.app` builds them: `Hub`, `Metrics`, `Delivery`, `create_broker(settings,
delivery)`.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import hiredis
import orjson
import pytest
import redis
import redis.asyncio as aioredis
from redis._parsers.hiredis import NOT_ENOUGH_DATA
from redis.asyncio.client import PubSub
from redis.exceptions import ResponseError

from service.broker import Broker, BrokerUnavailable, Window, _batch_read, create_broker
from service.broker.redis import RedisBroker
from service.broker.script import envelope, split_envelope
from service.delivery import Delivery
from service.hub import Hub
from service.ids import parse_id
from service.metrics import Metrics
from service.sse import Event, parse
from service.subscriber import Subscriber

from .conftest import settings
from .support import RedisServer, SinkTransport, sample_log

STREAM_ID = re.compile(r"[0-9]+-[0-9]+")


@dataclass
class Running:
    broker: Broker
    hub: Hub
    metrics: Metrics
    delivery: Delivery

    def watch(self, room: str, limit: int = 10_000) -> Subscriber:
        """A live stream of `room` whose socket is an in-memory transport."""
        sub = Subscriber(room, limit)
        self.hub.add(sub)
        sub.attach(SinkTransport(), chunked=False)
        return sub

    def invalid(self, reason: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "roomlogs_broker_invalid_messages_total", {"reason": reason}
        )
        return value or 0.0


StartBroker = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start_broker() -> AsyncIterator[StartBroker]:
    """Start brokers like the app does; every one is closed at the end, whatever happened."""
    started: list[Broker] = []

    async def start(**kw: Any) -> Running:
        metrics = Metrics()
        hub = Hub()
        config = settings(**kw)
        delivery = Delivery(hub, metrics, config.max_message_bytes)
        broker = create_broker(config, delivery)
        delivery.connect(broker)
        started.append(broker)
        await broker.start()
        async with asyncio.timeout(10):
            await broker.wait_live()  # Redis: the PSUBSCRIBE is confirmed
        assert broker.ready
        return Running(broker, hub, metrics, delivery)

    try:
        yield start
    finally:
        for broker in started:
            await broker.close()


@pytest.fixture
def start_kind(
    broker_kind: str, redis_server: RedisServer, start_broker: StartBroker
) -> StartBroker:
    """`start_broker` for the parametrized kind (memory, or redis on the private server)."""

    async def start(**kw: Any) -> Running:
        if broker_kind == "redis":
            kw.setdefault("redis_url", redis_server.url)
        return await start_broker(**kw)

    return start


def logs(count: int, start: int = 0) -> list[bytes]:
    return [orjson.dumps(sample_log(i)) for i in range(start, start + count)]


def written(sub: Subscriber) -> SinkTransport:
    sink = sub.transport
    assert isinstance(sink, SinkTransport)
    return sink


async def receive(sub: Subscriber, count: int, timeout: float = 10) -> list[Event]:
    """The next `count` events the hub wrote to `sub`'s transport, as a browser would read them."""
    sink = written(sub)
    events: list[Event] = []
    async with asyncio.timeout(timeout):
        while len(events) < count:
            data = await sink.next_write(timeout)
            assert sub.ending is None
            events.extend(parse(data, errors="strict"))
    assert len(events) == count
    return events


# -- both brokers -------------------------------------------------------------------------


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


async def test_memory_broker_refuses_publish_when_closed(
    start_broker: StartBroker, room: str
) -> None:
    run = await start_broker()
    await run.broker.close()
    assert not run.broker.ready
    with pytest.raises(BrokerUnavailable):
        await run.broker.publish(room, logs(1))


# -- Redis only ---------------------------------------------------------------------------


async def test_malformed_redis_payloads_are_counted_and_skipped(
    start_broker: StartBroker, redis_server: RedisServer, room: str
) -> None:
    run = await start_broker(redis_url=redis_server.url, max_message_bytes=1024)
    sub = run.watch(room)
    ch = f"room:{room}:logs"
    big = orjson.dumps(sample_log(0, message="x" * 2000))
    bad: list[tuple[str, bytes]] = [
        (ch, b"not json at all"),
        (ch, b'[{"message": "in an array"}]'),
        (ch, b'"just a string"'),
        (ch, big),
        (ch, b"\xff\xfe\x00garbage"),
        ("room:a:b:logs", orjson.dumps(sample_log(1))),
        ("room:-bad:logs", orjson.dumps(sample_log(2))),
    ]
    publisher = aioredis.Redis.from_url(redis_server.url)
    try:
        for name, payload in bad:
            await publisher.publish(name, payload)
        good = sample_log(3, message="still here")
        await publisher.publish(ch, orjson.dumps(good))
    finally:
        await publisher.aclose()
    # The reader handles the channel in order: once the good one is here, all were read.
    [event] = await receive(sub, 1)
    assert orjson.loads(event.data) == good
    assert event.last_event_id == ""  # a plain PUBLISH carries no id
    assert run.invalid("invalid_json") == 2
    assert run.invalid("not_an_object") == 2
    assert run.invalid("too_large") == 1
    assert run.invalid("bad_channel") == 2
    assert run.metrics.registry.get_sample_value("roomlogs_broker_messages_total") == len(bad) + 1
    assert run.broker.ready
    # And the service's own publish path still works after all that.
    ids = await run.broker.publish(room, logs(1))
    [published] = await receive(sub, 1)
    assert published.last_event_id == ids[0]


async def test_a_room_nobody_here_watches_is_not_decoded(
    start_broker: StartBroker, redis_server: RedisServer, room: str
) -> None:
    """Every instance sees every room's logs; only one with a stream of the room decodes them."""
    run = await start_broker(redis_url=redis_server.url)
    sub = run.watch(room)
    publisher = aioredis.Redis.from_url(redis_server.url)
    try:
        await publisher.publish(f"room:{room}-elsewhere:logs", b"not json, and nobody here cares")
        await publisher.publish(f"room:{room}:logs", orjson.dumps(sample_log(1)))
    finally:
        await publisher.aclose()
    [event] = await receive(sub, 1)  # the channel is read in order: both were handled
    assert orjson.loads(event.data)["message"] == "log 1"
    assert run.metrics.registry.get_sample_value("roomlogs_broker_messages_total") == 2
    assert run.invalid("invalid_json") == 0


async def test_one_pubsub_connection_however_many_rooms(
    start_broker: StartBroker, own_redis: RedisServer
) -> None:
    run = await start_broker(redis_url=own_redis.url)
    rooms = [f"many-{i}" for i in range(50)]
    subs = [run.watch(r) for r in rooms]
    for r in rooms:
        await run.broker.publish(r, logs(1))
    for sub in subs:
        await receive(sub, 1)
    pubsub = [
        line for line in own_redis.cli("CLIENT", "LIST", "TYPE", "pubsub").splitlines() if line
    ]
    assert len(pubsub) == 1, pubsub
    fields = dict(f.split("=", 1) for f in pubsub[0].split() if "=" in f)
    assert fields["psub"] == "1"
    assert fields["sub"] == "0"
    assert own_redis.cli("PUBSUB", "NUMPAT").strip() == "1"
    assert own_redis.cli("PUBSUB", "CHANNELS").strip() == ""


async def test_idle_redis_reader_does_not_spin(
    start_broker: StartBroker, redis_server: RedisServer, room: str
) -> None:
    """A real read timeout, never a spinning `get_message()`: an idle second costs ~no CPU."""
    run = await start_broker(redis_url=redis_server.url)
    sub = run.watch(room)
    cpu = time.process_time()
    await asyncio.sleep(1.0)  # the idle window being measured, not a synchronisation
    idle_cpu = time.process_time() - cpu
    assert idle_cpu < 0.2, f"{idle_cpu:.3f}s of CPU in 1s idle"
    # The reader was alive all along: it still delivers.
    ids = await run.broker.publish(room, logs(1))
    [event] = await receive(sub, 1)
    assert event.last_event_id == ids[0]


# -- the Redis reader's batches ---------------------------------------------------------------


def _publish_burst(url: str, messages: list[tuple[str, bytes]]) -> None:
    """PUBLISH every message in one pipeline, blocking the loop meanwhile: the subscription's
    socket then holds the whole burst when the reader next runs, as under load."""
    with redis.Redis.from_url(url) as client, client.pipeline(transaction=False) as pipe:
        for name, payload in messages:
            pipe.publish(name, payload)
        pipe.execute()


def _burst(room: str, count: int) -> tuple[list[tuple[str, bytes]], list[bytes], dict[str, int]]:
    """`count` messages on `room`'s channel, a few bad ones among them; the good ones; the bad
    ones' reasons."""
    ch = f"room:{room}:logs"
    messages: list[tuple[str, bytes]] = []
    good: list[bytes] = []
    for i in range(count):
        if i % 97 == 13:
            messages.append((ch, b"not json at all"))
        elif i % 97 == 50:
            messages.append((ch, b'"just a string"'))
        elif i % 97 == 80:
            messages.append((f"room:{room}:x:logs", orjson.dumps(sample_log(i))))
        else:
            good.append(envelope(f"1-{i}", orjson.dumps(sample_log(i))))
            messages.append((ch, good[-1]))
    bad = {"invalid_json": 0, "not_an_object": 0, "bad_channel": 0}
    for i in range(count):
        reason = {13: "invalid_json", 50: "not_an_object", 80: "bad_channel"}.get(i % 97)
        if reason:
            bad[reason] += 1
    return messages, good, bad


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Patch `PubSub.get_message` to count the calls that returned a message."""
    calls = [0]
    original = PubSub.get_message

    async def counting(self: PubSub, *args: Any, **kwargs: Any) -> Any:
        msg = await original(self, *args, **kwargs)
        if msg is not None:
            calls[0] += 1
        return msg

    monkeypatch.setattr(PubSub, "get_message", counting)
    return calls


@pytest.mark.parametrize("batched", [True, False])
async def test_a_burst_is_delivered_whole_in_order_and_counted(
    start_broker: StartBroker,
    redis_server: RedisServer,
    room: str,
    monkeypatch: pytest.MonkeyPatch,
    batched: bool,
) -> None:
    """What one socket read brought is delivered without a `get_message()` per message, with
    the same order, counts and skipped payloads as one at a time (`batched=False`: the path
    taken when redis-py's parser is not hiredis)."""
    if not batched:
        monkeypatch.setattr(_batch_read, "buffered_reader", lambda pubsub: None)
    reads = _count_reads(monkeypatch)
    run = await start_broker(redis_url=redis_server.url)
    sub = run.watch(room)
    messages, good, bad = _burst(room, 2000)
    before = reads[0]
    _publish_burst(redis_server.url, messages)
    events = await receive(sub, len(good))
    assert [e.last_event_id for e in events] == [
        f"1-{i}" for i in range(2000) if i % 97 not in (13, 50, 80)
    ]
    assert [orjson.loads(e.data) for e in events] == [
        orjson.loads(split_envelope(g)[2]) for g in good
    ]
    for reason, count in bad.items():
        assert run.invalid(reason) == count
    total = run.metrics.registry.get_sample_value("roomlogs_broker_messages_total")
    assert total == len(messages)
    if batched:  # ~600 KB of replies: a few dozen socket reads, not 2,000
        assert reads[0] - before < len(messages) // 10
    else:
        assert reads[0] - before == len(messages)
    assert run.broker.ready


async def test_buffered_replies_stop_at_a_subscribe_confirmation_and_raise_errors(
    start_broker: StartBroker, redis_server: RedisServer, room: str
) -> None:
    """The batch takes only what `get_message()` would have handed over the same way: a
    subscribe confirmation ends it (the caller awaits the catch-up), a PONG is skipped, an
    error reply is raised (the reader then reconnects)."""
    run = await start_broker(redis_url=redis_server.url)
    broker = run.broker
    assert isinstance(broker, RedisBroker)
    sub = run.watch(room)
    ch = f"room:{room}:logs".encode()

    def pmessage(i: int) -> bytes:
        data = envelope(f"1-{i}", orjson.dumps(sample_log(i)))
        parts = [b"pmessage", b"room:*:logs", ch, data]
        return b"*4\r\n" + b"".join(b"$%d\r\n%b\r\n" % (len(p), p) for p in parts)

    # As redis-py's parser makes it (its own `replyError` maps error codes to subclasses).
    reader = hiredis.Reader(notEnoughData=NOT_ENOUGH_DATA, replyError=ResponseError)
    reader.feed(pmessage(1))
    reader.feed(b"*2\r\n$4\r\npong\r\n$21\r\nredis-py-health-check\r\n")
    reader.feed(pmessage(2))
    reader.feed(b"*3\r\n$10\r\npsubscribe\r\n$11\r\nroom:*:logs\r\n:1\r\n")
    reader.feed(pmessage(3))
    reader.feed(pmessage(4)[:-7])  # incomplete: the next socket read completes it

    def deliver_buffered(reader: hiredis.Reader) -> bool:
        """What the reader does with a `take_buffered` batch: deliver it, even on an error."""
        batch: list[tuple[bytes, bytes]] = []
        try:
            return _batch_read.take_buffered(reader, batch)
        finally:
            run.delivery.on_messages(batch)

    assert deliver_buffered(reader) is True
    assert [e.last_event_id for e in await receive(sub, 2)] == ["1-1", "1-2"]
    assert deliver_buffered(reader) is False
    assert [e.last_event_id for e in await receive(sub, 1)] == ["1-3"]
    reader.feed(pmessage(4)[-7:] + b"-ERR something broke\r\n")
    with pytest.raises(ResponseError):
        deliver_buffered(reader)
    assert [e.last_event_id for e in await receive(sub, 1)] == ["1-4"]
    total = run.metrics.registry.get_sample_value("roomlogs_broker_messages_total")
    assert total == 4
