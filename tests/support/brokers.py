"""A broker started the way `service.app` starts one (`Hub`, `Metrics`, `Delivery`,
`create_broker(settings, delivery)`), and what its streams received, read as a browser would."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson

from service.broker import Broker
from service.delivery import Delivery
from service.hub import Hub
from service.metrics import Metrics
from service.sse import Event
from service.subscriber import Subscriber
from tests.support.factories import sample_log
from tests.support.sse import parse_sse
from tests.support.transports import SinkTransport


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


StartBroker = Callable[..., Awaitable[Running]]  # the `start_broker` and `start_kind` fixtures


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
            events.extend(parse_sse(data))
    assert len(events) == count
    return events
