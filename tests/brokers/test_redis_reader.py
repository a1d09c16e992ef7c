"""broker.redis's reader: one PSUBSCRIBE for every room, what it skips and counts, an idle read
that does not spin, and the batches it takes from one socket read (`broker._batch_read`)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import hiredis
import orjson
import pytest
import redis
import redis.asyncio as aioredis
from redis._parsers.hiredis import NOT_ENOUGH_DATA
from redis.asyncio.client import PubSub
from redis.exceptions import ResponseError

from service.broker import _batch_read
from service.broker.envelope import Envelopes, split_envelope
from service.broker.redis import RedisBroker
from tests.support.brokers import StartBroker, logs, receive
from tests.support.factories import sample_log
from tests.support.servers import RedisServer

# -- what the reader reads -------------------------------------------------------------------------


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
    assert event.last_event_id  # a plain PUBLISH is stored: it arrives by its envelope
    assert run.invalid("invalid_json") == 2
    assert run.invalid("not_an_object") == 2
    assert run.invalid("too_large") == 1
    assert run.invalid("bad_channel") == 2
    # The bad ones, the good one, and the good one's envelope.
    assert run.metrics.registry.get_sample_value("roomlogs_broker_messages_total") == len(bad) + 2
    assert run.broker.ready
    # And the service's own publish path still works after all that.
    ids = await run.broker.publish(room, logs(1))
    [published] = await receive(sub, 1)
    assert published.last_event_id == ids[0]


async def test_an_envelope_for_a_room_nobody_here_watches_is_not_decoded(
    start_broker: StartBroker, redis_server: RedisServer, room: str
) -> None:
    """Every instance sees every room's logs; only one with a stream of the room decodes an
    envelope (its tag is not even checked). A plain PUBLISH is another matter: it is validated
    and stored whoever watches (tests/app/test_plain_publish.py)."""
    run = await start_broker(redis_url=redis_server.url)
    sub = run.watch(room)
    elsewhere = f"room:{room}-elsewhere:logs"
    forged = b'{"id":"1-0","rlmac":"00000000000000000000","message":"x"}'
    publisher = aioredis.Redis.from_url(redis_server.url)
    try:
        await publisher.publish(elsewhere, forged)
        await publisher.publish(elsewhere, b"not json, and validated before it is stored")
        await publisher.publish(f"room:{room}:logs", forged)
        ids = await run.broker.publish(room, logs(1))
    finally:
        await publisher.aclose()
    [event] = await receive(sub, 1)  # the channel is read in order: all were handled
    assert event.last_event_id == ids[0]
    assert run.metrics.registry.get_sample_value("roomlogs_broker_messages_total") == 4
    assert run.invalid("forged") == 1  # the watched room's only
    assert run.invalid("invalid_json") == 1


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


# -- the Redis reader's batches --------------------------------------------------------------------


def _publish_burst(url: str, messages: list[tuple[str, bytes]]) -> None:
    """PUBLISH every message in one pipeline, blocking the loop meanwhile: the subscription's
    socket then holds the whole burst when the reader next runs, as under load."""
    with redis.Redis.from_url(url) as client, client.pipeline(transaction=False) as pipe:
        for name, payload in messages:
            pipe.publish(name, payload)
        pipe.execute()


def _burst(
    room: str, count: int, envelopes: Envelopes
) -> tuple[list[tuple[str, bytes]], list[bytes], dict[str, int]]:
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
            good.append(envelopes.wrap(f"1-{i}", orjson.dumps(sample_log(i))))
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
    assert run.broker.envelopes is not None
    messages, good, bad = _burst(room, 2000, run.broker.envelopes)
    before = reads[0]
    _publish_burst(redis_server.url, messages)
    events = await receive(sub, len(good))
    assert [e.last_event_id for e in events] == [
        f"1-{i}" for i in range(2000) if i % 97 not in (13, 50, 80)
    ]
    bodies = [split_envelope(g) for g in good]
    assert [orjson.loads(e.data) for e in events] == [orjson.loads(b[3]) for b in bodies if b]
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
    subscribe confirmation ends it and is returned (the caller awaits the catch-up), so is a
    PING's answer (SUBSCRIBE_MODE=rooms goes live on one), redis-py's health-check PONG is
    skipped, an error reply is raised (the reader then reconnects)."""
    run = await start_broker(redis_url=redis_server.url)
    broker = run.broker
    assert isinstance(broker, RedisBroker)
    sub = run.watch(room)
    ch = f"room:{room}:logs".encode()

    assert broker.envelopes is not None
    envelopes = broker.envelopes

    def pmessage(i: int) -> bytes:
        data = envelopes.wrap(f"1-{i}", orjson.dumps(sample_log(i)))
        parts = [b"pmessage", b"room:*:logs", ch, data]
        return b"*4\r\n" + b"".join(b"$%d\r\n%b\r\n" % (len(p), p) for p in parts)

    # As redis-py's parser makes it (its own `replyError` maps error codes to subclasses).
    reader = hiredis.Reader(notEnoughData=NOT_ENOUGH_DATA, replyError=ResponseError)
    reader.feed(pmessage(1))
    reader.feed(b"*2\r\n$4\r\npong\r\n$21\r\nredis-py-health-check\r\n")
    reader.feed(pmessage(2))
    reader.feed(b"*3\r\n$10\r\npsubscribe\r\n$11\r\nroom:*:logs\r\n:1\r\n")
    reader.feed(pmessage(3))
    reader.feed(b"*2\r\n$4\r\npong\r\n$5\r\nmark1\r\n")  # a PING answered subscribed
    reader.feed(b"$5\r\nmark2\r\n")  # and unsubscribed (a bulk string)
    reader.feed(pmessage(4)[:-7])  # incomplete: the next socket read completes it

    def deliver_buffered(reader: hiredis.Reader) -> list[Any] | None:
        """What the reader does with a `take_until_control` batch: deliver it, even on an
        error (PING answers returned too, as the reader asks)."""
        batch: list[tuple[bytes, bytes]] = []
        try:
            return _batch_read.take_until_control(reader, batch, pongs=True)
        finally:
            run.delivery.on_messages(batch)

    assert deliver_buffered(reader) == [b"psubscribe", b"room:*:logs", 1]
    assert [e.last_event_id for e in await receive(sub, 2)] == ["1-1", "1-2"]
    assert deliver_buffered(reader) == [b"pong", b"mark1"]
    assert [e.last_event_id for e in await receive(sub, 1)] == ["1-3"]
    assert deliver_buffered(reader) == [b"pong", b"mark2"]
    assert deliver_buffered(reader) is None
    reader.feed(pmessage(4)[-7:] + b"-ERR something broke\r\n")
    with pytest.raises(ResponseError):
        deliver_buffered(reader)
    assert [e.last_event_id for e in await receive(sub, 1)] == ["1-4"]
    total = run.metrics.registry.get_sample_value("roomlogs_broker_messages_total")
    assert total == 4
