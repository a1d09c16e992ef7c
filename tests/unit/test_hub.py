"""hub: rooms → streams, the fan-out once per loop turn, control frames, the sweep and the
bookkeeping, driven directly (no I/O, no server)."""

from __future__ import annotations

from service.cursor import Cursor, epoch_for
from service.delivery import Delivery
from service.endings import Ending
from service.filters import StreamFilter
from service.hub import Hub
from service.metrics import Metrics
from service.subscriber import Subscriber
from tests.support.factories import MS, message
from tests.support.recording import RecordedEndings
from tests.support.sse import parse_sse
from tests.support.transports import ClientTransport, SinkTransport

# -- dispatch --------------------------------------------------------------------------------------


async def test_dispatch_reaches_only_the_rooms_subscribers() -> None:
    hub = Hub()
    a1, a2, b = Subscriber("a", 10), Subscriber("a", 10), Subscriber("b", 10)
    for sub in (a1, a2, b):
        hub.add(sub)
    msg = message("a", 0)
    assert hub.dispatch(msg) == 2
    hub.flush()  # the fan-out happens at the end of the loop turn
    assert a1.take()[0] == msg.frame
    assert a2.take()[0] == msg.frame
    assert b.queued == 0
    assert b.take()[0] == b""
    assert hub.dispatch(message("nobody-here", 0)) == 0


async def test_dispatch_keeps_order() -> None:
    hub = Hub()
    sub = Subscriber("a", 100)
    hub.add(sub)
    msgs = [message("a", i) for i in range(20)]
    for msg in msgs:
        hub.dispatch(msg)
    hub.flush()
    assert sub.take()[0] == b"".join(m.frame for m in msgs)


async def test_a_stream_of_several_rooms_gets_a_turn_in_arrival_order_across_rooms() -> None:
    """The fan-out goes room by room; a multi-room stream must not see a's later log before
    b's earlier one because a's first log of the turn came first."""
    hub = Hub()
    rooms = ["a", "b"]
    multi = Subscriber(rooms, 100, cursor=Cursor(rooms, epoch_for(MS)))
    single = Subscriber("a", 100)
    hub.add(multi)
    hub.add(single)
    order = [message("a", 0), message("b", 1), message("a", 2), message("b", 3)]
    for msg in order:
        hub.dispatch(msg)
    hub.flush()
    body = multi.take()[0]
    assert [e.json()["roomId"] for e in parse_sse(body)] == ["a", "b", "a", "b"]
    assert single.take()[0] == order[0].frame + order[2].frame
    hub.remove(multi)
    hub.dispatch(message("b", 4))
    hub.flush()  # its rooms forget it
    assert multi.queued == 0


async def test_full_buffer_closes_only_that_subscriber_as_slow_consumer() -> None:
    hub = Hub()
    endings = RecordedEndings(hub)
    slow = Subscriber("a", 3, owner=endings)
    fast1, fast2 = Subscriber("a", 1000, owner=endings), Subscriber("a", 1000, owner=endings)
    for sub in (fast1, slow, fast2):
        hub.add(sub)
    msgs = [message("a", i) for i in range(50)]
    # Nobody reads: the fan-out is synchronous, so it never waits for the slow one.
    for msg in msgs:
        hub.dispatch(msg)
    hub.flush()

    assert slow.ending is Ending.SLOW_CONSUMER
    assert slow.ending is not None
    # Ended once, and removed from the hub by its ending.
    assert endings.ended_streams == [(slow, Ending.SLOW_CONSUMER)]
    assert endings.slow_consumers() == 1
    assert hub.subscribers("a") == 2
    assert len(hub) == 2
    assert slow not in list(hub)
    # Never thinned: the slow one holds exactly what fitted, in order.
    assert slow.queued == 3
    assert slow.take()[0] == b"".join(m.frame for m in msgs[:3])
    for fast in (fast1, fast2):
        assert fast.queued == len(msgs)
        assert fast.take()[0] == b"".join(m.frame for m in msgs)


async def test_dispatch_counts_subscribers_including_one_closed_as_slow() -> None:
    hub = Hub()
    slow, fast = Subscriber("a", 1), Subscriber("a", 10)
    hub.add(slow)
    hub.add(fast)
    assert hub.dispatch(message("a", 0)) == 2
    assert hub.dispatch(message("a", 1)) == 2
    hub.flush()  # slow closed on the second one, it was still offered it
    assert slow.ending is Ending.SLOW_CONSUMER
    assert hub.dispatch(message("a", 2)) == 1


async def test_a_burst_is_joined_once_per_room_and_each_stream_gets_what_it_asked_for() -> None:
    hub = Hub()
    plain1, plain2 = Subscriber("a", 10), Subscriber("a", 10)
    errors = Subscriber("a", 10, filter=StreamFilter.of("error", None))
    paused = Subscriber("a", 10)
    sinks = {sub: SinkTransport() for sub in (plain1, plain2, errors, paused)}
    conns = {}
    for sub, sink in sinks.items():
        hub.add(sub)
        conns[sub] = sub.attach(sink, chunked=False)
    conns[paused].pause_writing()
    msgs = [message("a", 0), message("a", 1, level="error"), message("a", 2)]
    for msg in msgs:
        hub.dispatch(msg)
    hub.flush()
    body = b"".join(m.frame for m in msgs)
    assert sinks[plain1].writes == [body]
    assert sinks[plain2].writes[0] is sinks[plain1].writes[0]  # encoded once, for the room
    assert sinks[errors].writes == [msgs[1].frame]
    assert sinks[paused].writes == []
    conns[paused].resume_writing()
    assert sinks[paused].writes == [body]


# -- control frames --------------------------------------------------------------------------------


async def test_control_bypasses_the_bound_and_comes_first() -> None:
    hub = Hub()
    sub = Subscriber("a", 2)
    hub.add(sub)
    msgs = [message("a", 0), message("a", 1)]
    for msg in msgs:
        hub.dispatch(msg)
    hub.flush()
    assert sub.queued == sub.limit  # full
    beat = b"event: heartbeat\ndata: {}\n\n"
    hub.control(beat)
    assert sub.ending is None
    assert hub.subscribers("a") == 1
    assert sub.take()[0] == beat + msgs[0].frame + msgs[1].frame


def test_hub_control_reaches_every_room() -> None:
    hub = Hub()
    subs = [Subscriber("a", 1), Subscriber("a", 1), Subscriber("b", 1)]
    for sub in subs:
        hub.add(sub)
    hub.control(b"event: heartbeat\ndata: {}\n\n")
    assert [s.take()[0] for s in subs] == [b"event: heartbeat\ndata: {}\n\n"] * 3


# -- sweep -----------------------------------------------------------------------------------------


def test_sweep_closes_subscribers_whose_transport_is_closing() -> None:
    hub = Hub()
    gone_t, alive_t = ClientTransport(), ClientTransport()
    gone = Subscriber("a", 10, transport=gone_t)
    alive = Subscriber("a", 10, transport=alive_t)
    detached = Subscriber("b", 10)  # no transport: never swept
    for sub in (gone, alive, detached):
        hub.add(sub)
    assert hub.sweep() == 0
    gone_t.closing = True
    assert hub.sweep() == 1
    assert gone.ending is Ending.CLIENT_GONE
    assert alive.ending is None
    assert detached.ending is None
    assert len(hub) == 2
    assert hub.subscribers("a") == 1
    assert hub.sweep() == 0


def test_sweep_ends_streams_whose_token_expired() -> None:
    hub = Hub()
    now = 1_800_000_000.0
    expired = Subscriber("a", 10, expires_at=now - 0.5)
    valid = Subscriber("a", 10, expires_at=now + 60)
    forever = Subscriber("b", 10)
    for sub in (expired, valid, forever):
        hub.add(sub)
    assert hub.sweep(now) == 1
    assert expired.ending is Ending.TOKEN_EXPIRED
    assert valid.ending is None
    assert forever.ending is None
    assert len(hub) == 2
    assert hub.sweep() == 0  # without a clock, only clients that left are looked for


# -- bookkeeping -----------------------------------------------------------------------------------


async def test_add_and_remove_bookkeeping() -> None:
    hub = Hub()
    delivery = Delivery(hub, Metrics(), 65536)
    hub.listener = delivery
    a1, a2, b = Subscriber("a", 10), Subscriber("a", 10), Subscriber("b", 10)
    hub.add(a1)
    hub.add(a1)  # twice: counted once
    hub.add(a2)
    hub.add(b)
    assert len(hub) == 3
    assert hub.room_count == 2
    assert sorted(hub.rooms()) == ["a", "b"]
    assert hub.subscribers("a") == 2
    assert set(hub) == {a1, a2, b}

    delivery.deliver(message("a", 4))
    hub.remove(a1)
    assert delivery.position("a") == (MS, 4)  # still has a subscriber
    hub.remove(a1)  # unknown now: a no-op
    hub.remove(Subscriber("zzz", 1))
    assert len(hub) == 2
    hub.remove(a2)
    assert delivery.position("a") is None  # the room emptied: its key is forgotten
    assert hub.room_count == 1
    assert hub.rooms() == ["b"]
    assert hub.subscribers("a") == 0
    assert len(hub) == 1

    # A new subscriber of the emptied room gets any key again.
    again = Subscriber("a", 10)
    hub.add(again)
    assert delivery.deliver(message("a", 1)) == 1


def test_close_all_closes_and_removes_everyone() -> None:
    hub = Hub()
    subs = [Subscriber("a", 1), Subscriber("b", 1), Subscriber("b", 1)]
    for sub in subs:
        hub.add(sub)
    hub.close_all(Ending.SHUTDOWN)
    assert [s.ending for s in subs] == [Ending.SHUTDOWN] * 3
    assert len(hub) == 0
    assert hub.room_count == 0


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
