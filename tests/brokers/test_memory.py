"""broker.memory, the embedded broker: refuses to publish once closed; its history bound holds
for any sequence of batches."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.broker import BrokerUnavailable
from service.broker.memory import MemoryBroker
from service.delivery import Delivery
from service.hub import Hub
from service.metrics import Metrics
from service.settings import Settings
from tests.support.brokers import StartBroker, logs


async def test_memory_broker_refuses_publish_when_closed(
    start_broker: StartBroker, room: str
) -> None:
    run = await start_broker()
    await run.broker.close()
    assert not run.broker.ready
    with pytest.raises(BrokerUnavailable):
        await run.broker.publish(room, logs(1))


@settings(max_examples=50, deadline=None)
@given(history_max=st.integers(1, 50), batches=st.lists(st.integers(1, 30), max_size=10))
def test_memory_history_never_holds_more_than_history_max_for_any_batches(
    history_max: int, batches: list[int]
) -> None:
    async def run() -> None:
        broker = MemoryBroker(Settings(history_max=history_max), Delivery(Hub(), Metrics(), 65536))
        await broker.start()
        sent: list[str] = []
        for n in batches:
            sent += await broker.publish("room-1", [b'{"message":"m","t":1}'] * n)
            held = await broker.history("room-1", None, 10_000)
            assert len(held) <= history_max
            assert [i for i, _ in held] == sent[-history_max:]

    asyncio.run(run())
