"""delivery, between the broker and the hub: dedupe by stream id per room (how it tells the
broker which rooms to listen to runs in the app: tests/app/test_delivery.py)."""

from __future__ import annotations

from service.delivery import Delivery
from service.hub import Hub
from service.metrics import Metrics
from service.subscriber import Subscriber
from tests.support.factories import MS, message


def _wired() -> tuple[Hub, Delivery]:
    hub = Hub()
    delivery = Delivery(hub, Metrics(), 65536)
    hub.listener = delivery
    return hub, delivery


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
