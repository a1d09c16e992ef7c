"""Delivery in the app: the hub's room events become the broker's subscribe / unsubscribe,
before a room's first replay and after its last stream (dedupe is tests/unit/test_delivery.py)."""

from __future__ import annotations

import asyncio

from service.app import create_app
from service.broker import Broker, BrokerEvents
from service.endings import Ending
from service.settings import Settings
from service.state import STATE
from tests.support.factories import MS, ClientFactory, auth, sample_log, settings
from tests.support.recording import RecordingBroker
from tests.support.sse import SSEStream


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
