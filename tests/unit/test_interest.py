"""interest: the per-room subscription bookkeeping shared by every per-room subscriber."""

from __future__ import annotations

import asyncio

from service.broker.interest import Interest, batches


class Woken:
    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.count = 0

    def __call__(self) -> None:
        self.count += 1
        self.event.set()

    async def wait(self) -> None:
        async with asyncio.timeout(5):
            await self.event.wait()
        self.event.clear()


async def test_first_streams_are_subscribed_in_one_batch_and_wake_once() -> None:
    woken = Woken()
    interest = Interest(5.0, woken)
    interest.open(["a"])
    interest.open(["b", "a"])
    assert woken.count == 1  # one wake until the wire code takes the changes
    changes = interest.take()
    assert changes.subscribe == ["a", "b"]
    assert changes.unsubscribe == []
    assert not changes.resubscribed
    assert not interest.take()


async def test_a_stream_waits_for_its_rooms_confirmation() -> None:
    interest = Interest(5.0, Woken())
    interest.open(["a", "b"])
    interest.take()
    waiting = asyncio.create_task(interest.until_subscribed(["a", "b"]))
    interest.subscribed(["a"])
    await asyncio.sleep(0)
    assert not waiting.done()
    interest.subscribed(["b"])
    async with asyncio.timeout(5):
        await waiting
    # Confirmed rooms do not wait at all.
    async with asyncio.timeout(5):
        await interest.until_subscribed(["a"])


async def test_a_room_reopened_within_the_linger_costs_nothing() -> None:
    woken = Woken()
    interest = Interest(60.0, woken)
    interest.open(["a"])
    interest.take()
    interest.subscribed(["a"])
    interest.close(["a"])
    interest.open(["a"])
    assert not interest.take()
    assert interest.wanted == {"a"}


async def test_a_room_is_unsubscribed_after_the_linger() -> None:
    woken = Woken()
    interest = Interest(0.05, woken)
    interest.open(["a"])
    await woken.wait()
    interest.take()
    interest.subscribed(["a"])
    interest.close(["a"])
    await woken.wait()  # the linger's timer, not a sleep
    changes = interest.take()
    assert changes.unsubscribe == ["a"]
    assert changes.subscribe == []
    assert interest.wanted == set()


async def test_without_linger_a_room_closed_before_its_subscribe_went_out_sends_nothing() -> None:
    interest = Interest(0, Woken())
    interest.open(["a"])
    interest.close(["a"])
    assert not interest.take()


async def test_a_lost_connection_resubscribes_every_wanted_room_for_a_catch_up() -> None:
    interest = Interest(5.0, Woken())
    interest.open(["a", "b"])
    interest.take()
    interest.subscribed(["a"])  # b's SUBSCRIBE is still in flight
    interest.lost()
    changes = interest.take()
    assert sorted(changes.subscribe) == ["a", "b"]
    assert changes.resubscribed == {"a", "b"}
    assert interest.pending() == {"a", "b"}


async def test_a_pushed_unsubscribe_of_a_wanted_room_resubscribes_it() -> None:
    interest = Interest(5.0, Woken())
    interest.open(["a", "b"])
    interest.take()
    interest.subscribed(["a", "b"])
    interest.unsubscribed(["b"])  # e.g. a Cluster slot moved
    changes = interest.take()
    assert changes.subscribe == ["b"]
    assert changes.resubscribed == {"b"}


async def test_clear_cancels_lingering_timers_and_waiters() -> None:
    woken = Woken()
    interest = Interest(0.01, woken)
    interest.open(["a"])
    interest.take()
    waiting = asyncio.create_task(interest.until_subscribed(["a"]))
    await asyncio.sleep(0)
    interest.close(["a"])
    interest.clear()
    async with asyncio.timeout(5):
        await asyncio.gather(waiting, return_exceptions=True)
    assert waiting.cancelled()
    woken.count = 0
    await asyncio.sleep(0.05)  # past the linger: the cancelled timer must not fire
    assert woken.count == 0


def test_batches_split_at_the_size() -> None:
    rooms = [str(n) for n in range(1030)]
    assert [len(b) for b in batches(rooms)] == [512, 512, 6]
