"""PUBLISH_REPLICAS on one Redis without replicas: `WAIT` answers 0, so every publish is an
unknown outcome (504), stored all the same; with 0 nothing waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from service.broker import Broker, PublishOutcomeUnknown, create_broker
from service.delivery import Delivery
from service.hub import Hub
from service.metrics import Metrics
from tests.support.brokers import logs
from tests.support.factories import settings
from tests.support.servers import RedisServer

pytestmark = [pytest.mark.process, pytest.mark.topology]


@pytest.fixture
async def broker(redis_server: RedisServer) -> AsyncIterator[Any]:
    started: list[Broker] = []

    async def start(**kw: Any) -> Broker:
        config = settings(redis_url=redis_server.url, **kw)
        delivery = Delivery(Hub(), Metrics(), config.max_message_bytes)
        made = create_broker(config, delivery)
        delivery.connect(made)
        started.append(made)
        await made.start()
        async with asyncio.timeout(10):
            await made.wait_live()
        return made

    yield start
    for made in started:
        await made.close()


async def test_too_few_replicas_is_an_unknown_outcome_after_the_timeout(
    broker: Any, room: str
) -> None:
    waiting = await broker(publish_replicas=1, publish_replicas_timeout_ms=150)
    began = time.monotonic()
    with pytest.raises(PublishOutcomeUnknown, match="0 of the 1 replicas"):
        await waiting.publish_once(room, logs(2), "k1", "fingerprint")
    assert time.monotonic() - began >= 0.14  # WAIT waited its timeout
    # Stored on the primary: the retry with the key returns the same ids (and waits again).
    stored = [stream_id for stream_id, _ in await waiting.history(room, None, 10)]
    assert len(stored) == 2
    with pytest.raises(PublishOutcomeUnknown):
        await waiting.publish_once(room, logs(2), "k1", "fingerprint")
    with pytest.raises(PublishOutcomeUnknown):
        await waiting.publish(room, logs(1))

    plain = await broker(publish_replicas=0)
    replayed = await plain.publish_once(room, logs(2), "k1", "fingerprint")
    assert (replayed.ids, replayed.replayed) == (stored, True)
