"""Brokers started the way `service.app` starts them, closed at the end whatever happened."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from service.broker import Broker, create_broker
from service.delivery import Delivery
from service.hub import Hub
from service.metrics import Metrics
from tests.support.brokers import Running, StartBroker
from tests.support.factories import settings
from tests.support.servers import RedisServer


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
            await broker.wait_live()  # Redis: the PSUBSCRIBE (or first SUBSCRIBEs) confirmed
        assert broker.ready
        return Running(broker, hub, metrics, delivery)

    try:
        yield start
    finally:
        for broker in started:
            # Bounded: a close that hangs fails this test, not the whole suite.
            async with asyncio.timeout(20):
                await broker.close()


@pytest.fixture(params=["memory", "redis", "redis-rooms"])
def broker_kind(request: pytest.FixtureRequest) -> str:
    """The broker kinds of the contract: memory, and redis in each SUBSCRIBE_MODE."""
    kind: str = request.param
    return kind


@pytest.fixture
def start_kind(
    broker_kind: str, redis_server: RedisServer, start_broker: StartBroker
) -> StartBroker:
    """`start_broker` for the parametrized kind (memory, or redis on the private server)."""

    async def start(**kw: Any) -> Running:
        if broker_kind.startswith("redis"):
            kw.setdefault("redis_url", redis_server.url)
        if broker_kind == "redis-rooms":
            kw.setdefault("subscribe_mode", "rooms")
        return await start_broker(**kw)

    return start
