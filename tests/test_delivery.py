"""Delivery: between the broker and the hub (dedupe by stream id per room, the hub's room
events turned into the broker's subscribe / unsubscribe)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from service.app import create_app
from service.broker import Broker, BrokerEvents, HistoryEntry, Window
from service.broker.memory import MemoryBroker
from service.delivery import Delivery
from service.endings import Ending
from service.hub import Hub
from service.metrics import Metrics
from service.settings import Settings
from service.state import STATE
from service.subscriber import Subscriber

from .conftest import ClientFactory, auth, settings
from .support import MS, SSEStream, message, sample_log


def _wired() -> tuple[Hub, Delivery]:
    hub = Hub()
    delivery = Delivery(hub, Metrics(), 65536)
    hub.listener = delivery
    return hub, delivery


# -- dedup by stream key ------------------------------------------------------------------


async def test_duplicate_and_older_keys_are_dropped() -> None:
    hub, delivery = _wired()
    sub = Subscriber("a", 100)
    hub.add(sub)
    live = [message("a", i) for i in range(3)]
    for msg in live:
        assert delivery.deliver(msg) == 1
    assert delivery.position("a") == (MS, 2)
    # A catch-up after a reconnect reads history after an older id: overlaps are dropped.
    catch_up = [message("a", i) for i in range(1, 5)]
    assert [delivery.deliver(m) for m in catch_up] == [0, 0, 1, 1]
    assert delivery.deliver(message("a", 0, ms=MS - 1)) == 0  # older millisecond
    assert delivery.position("a") == (MS, 4)
    hub.flush()
    assert sub.take()[0] == b"".join(m.frame for m in live + catch_up[2:])


async def test_dedup_is_per_room() -> None:
    hub, delivery = _wired()
    a, b = Subscriber("a", 10), Subscriber("b", 10)
    hub.add(a)
    hub.add(b)
    assert delivery.deliver(message("a", 9)) == 1
    assert delivery.deliver(message("b", 1)) == 1  # an older key than room a's newest
    assert delivery.position("a") == (MS, 9)
    assert delivery.position("b") == (MS, 1)
    hub.flush()
    assert b.queued == 1


async def test_messages_without_an_id_are_never_deduplicated() -> None:
    hub, delivery = _wired()
    sub = Subscriber("a", 10)
    hub.add(sub)
    delivery.deliver(message("a", 5))
    foreign = message("a", None)
    assert delivery.deliver(foreign) == 1
    assert delivery.deliver(foreign) == 1
    assert delivery.position("a") == (MS, 5)
    hub.flush()
    assert sub.queued == 3


async def test_a_room_without_subscribers_records_no_key() -> None:
    hub, delivery = _wired()
    delivery.deliver(message("a", 7))
    assert delivery.position("a") is None
    sub = Subscriber("a", 10)
    hub.add(sub)
    assert delivery.deliver(message("a", 3)) == 1


# -- the broker is told which rooms to listen to -------------------------------------------


class RecordingBroker(MemoryBroker):
    """The embedded broker, writing down what it is told and what is read from it, in order."""

    def __init__(self, settings: Settings, events: BrokerEvents) -> None:
        super().__init__(settings, events)
        self.calls: list[tuple[str, str]] = []
        self.changed = asyncio.Event()

    def subscribe(self, rooms: Collection[str]) -> None:
        self.calls += [("subscribe", room) for room in rooms]
        self.changed.set()
        super().subscribe(rooms)

    def unsubscribe(self, rooms: Collection[str]) -> None:
        self.calls += [("unsubscribe", room) for room in rooms]
        self.changed.set()
        super().unsubscribe(rooms)

    async def history(self, room: str, after: str | None, limit: int) -> list[HistoryEntry]:
        self.calls.append(("history", room))
        return await super().history(room, after, limit)

    async def last(self, room: str, count: int) -> list[HistoryEntry]:
        self.calls.append(("last", room))
        return await super().last(room, count)

    async def window(self, room: str) -> Window:
        self.calls.append(("window", room))
        return await super().window(room)

    def told(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if c[0] in ("subscribe", "unsubscribe")]


async def test_a_room_is_subscribed_before_its_first_replay_and_unsubscribed_after_its_last(
    aiohttp_client: ClientFactory, room: str
) -> None:
    recording: list[RecordingBroker] = []

    def make_broker(config: Settings, events: BrokerEvents) -> Broker:
        recording.append(RecordingBroker(config, events))
        return recording[0]

    client = await aiohttp_client(create_app(settings(), make_broker=make_broker))
    [broker] = recording
    hub = client.app[STATE].hub
    for i in range(3):
        r = await client.post(f"/api/v1/rooms/{room}/logs", json=sample_log(i), headers=auth())
        assert r.status == 202
    assert broker.told() == []  # publishing is not listening

    url = f"/api/v1/rooms/{room}/logs"
    async with client.get(url + "?history=2", headers=auth()) as first:
        sse = SSEStream(first)
        assert (await sse.next()).event == "connected"
        assert [e.json()["message"] for e in await sse.collect(2)] == ["log 1", "log 2"]
        # Told before the first stream's replay was read.
        assert broker.calls[:2] == [("subscribe", room), ("last", room)]
        ids = [s for s in hub]
        async with client.get(url, headers={**auth(), "Last-Event-ID": f"{MS}-0"}) as second:
            assert (await SSEStream(second).next()).event == "connected"
            assert broker.told() == [("subscribe", room)]  # nothing for a watched room
            # The first stream ends (as a drain would end it): the room still has one.
            [first_sub] = ids
            first_sub.close(Ending.SHUTDOWN)
            assert len(hub) == 1
            assert broker.told() == [("subscribe", room)]
            broker.changed.clear()
        # The client of the second, last stream left.
        async with asyncio.timeout(10):
            await broker.changed.wait()
        assert broker.told() == [("subscribe", room), ("unsubscribe", room)]
        assert len(hub) == 0


async def test_a_stream_of_several_rooms_opens_and_closes_each_room_once() -> None:
    hub = Hub()
    events: list[tuple[str, str]] = []

    class Listener:
        def room_opened(self, room: str) -> None:
            events.append(("opened", room))

        def room_closed(self, room: str) -> None:
            events.append(("closed", room))

    hub.listener = Listener()
    both = Subscriber(("a", "b"), 10)
    only_a = Subscriber("a", 10)
    hub.add(both)
    hub.add(only_a)
    assert events == [("opened", "a"), ("opened", "b")]
    assert len(hub) == 2
    assert set(hub) == {both, only_a}
    hub.remove(both)
    assert events == [("opened", "a"), ("opened", "b"), ("closed", "b")]
    hub.remove(only_a)
    assert events[-1] == ("closed", "a")
    assert len(hub) == 0
