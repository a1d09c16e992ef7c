"""Hub and Subscriber: the in-process fan-out, driven directly (no I/O, no server)."""

from __future__ import annotations

import asyncio

import pytest

from service.delivery import Delivery
from service.endings import Ending, Endings
from service.filters import StreamFilter
from service.hub import Hub
from service.metrics import Metrics
from service.subscriber import Subscriber

from .support import MS, SinkTransport, message


class ClientTransport(asyncio.Transport):
    """All the hub reads of a connection: whether it is closing. A real object, not a mock."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False

    def is_closing(self) -> bool:
        return self.closing


# -- dispatch -----------------------------------------------------------------------------


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


async def test_full_buffer_closes_only_that_subscriber_as_slow_consumer() -> None:
    hub = Hub()
    endings = Recorded(hub)
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


# -- take() -------------------------------------------------------------------------------


def test_take_coalesces_everything_queued_in_order() -> None:
    sub = Subscriber("a", 10)
    msgs = [message("a", i) for i in range(4)] + [message("a", None)]
    for msg in msgs:
        assert sub.offer(msg)
    assert sub.take()[0] == b"".join(m.frame for m in msgs)
    assert sub.queued == 0
    assert sub.take()[0] == b""


def test_take_skips_keys_at_or_below_after() -> None:
    sub = Subscriber("a", 10)
    sub.replayed("a", (MS, 2))  # the replay already sent up to here
    msgs = [message("a", i) for i in range(5)]
    for msg in msgs:
        sub.offer(msg)
    assert sub.take()[0] == msgs[3].frame + msgs[4].frame
    assert sub.after is None  # past the replay: later keys are never compared again
    later = message("a", 1, ms=MS + 1)
    sub.offer(later)
    assert sub.take()[0] == later.frame


def test_take_keeps_messages_without_id_during_replay_overlap() -> None:
    sub = Subscriber("a", 10)
    sub.replayed("a", (MS, 5))
    foreign = message("a", None)
    old, new = message("a", 5), message("a", 6)
    for msg in (old, foreign, new):
        sub.offer(msg)
    assert sub.take()[0] == foreign.frame + new.frame


# -- filters ------------------------------------------------------------------------------


LEVELS = ("debug", "info", "success", "warn", "error")


async def test_min_level_filter() -> None:
    hub = Hub()
    warn_up = Subscriber("a", 100, filter=StreamFilter.of("warn", None))
    everything = Subscriber("a", 100, filter=StreamFilter.of("debug", None))
    hub.add(warn_up)
    hub.add(everything)
    msgs = [message("a", i, level=lvl) for i, lvl in enumerate(LEVELS)]
    for msg in msgs:
        hub.dispatch(msg)
    hub.flush()
    assert warn_up.take()[0] == msgs[3].frame + msgs[4].frame
    assert everything.take()[0] == b"".join(m.frame for m in msgs)


async def test_agent_type_filter_and_combined_filters() -> None:
    hub = Hub()
    code = Subscriber("a", 100, filter=StreamFilter.of(None, "code"))
    code_errors = Subscriber("a", 100, filter=StreamFilter.of("error", "code"))
    hub.add(code)
    hub.add(code_errors)
    msgs = [
        message("a", 0, agent="story", level="error"),
        message("a", 1, agent="code", level="info"),
        message("a", 2, agent="code", level="error"),
        message("a", 3, agent="deploy", level="warn"),
    ]
    for msg in msgs:
        hub.dispatch(msg)
    hub.flush()
    assert code.take()[0] == msgs[1].frame + msgs[2].frame
    assert code_errors.take()[0] == msgs[2].frame


async def test_filtered_messages_do_not_fill_the_buffer_or_get_written() -> None:
    hub = Hub()
    sub = Subscriber("a", 2, filter=StreamFilter.of("warn", "code"))
    hub.add(sub)
    sink = SinkTransport()
    sub.attach(sink, chunked=False)
    for i in range(20):
        hub.dispatch(message("a", i, agent="story", level="error"))
        hub.dispatch(message("a", 100 + i, agent="code", level="info"))
    hub.flush()
    assert sub.ending is None
    assert sub.queued == 0
    assert sink.writes == []


# -- control frames -----------------------------------------------------------------------


def test_control_replaces_an_unsent_control_frame() -> None:
    sub = Subscriber("a", 10)
    sub.control(b"event: heartbeat\ndata: 1\n\n")
    sub.control(b"event: heartbeat\ndata: 2\n\n")
    assert sub.take()[0] == b"event: heartbeat\ndata: 2\n\n"
    assert sub.take()[0] == b""


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


# -- sweep --------------------------------------------------------------------------------


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


# -- bookkeeping --------------------------------------------------------------------------


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
    assert hub.dispatch(message("a", 1)) == 1


def test_close_all_closes_and_removes_everyone() -> None:
    hub = Hub()
    subs = [Subscriber("a", 1), Subscriber("b", 1), Subscriber("b", 1)]
    for sub in subs:
        hub.add(sub)
    hub.close_all(Ending.SHUTDOWN)
    assert [s.ending for s in subs] == [Ending.SHUTDOWN] * 3
    assert len(hub) == 0
    assert hub.room_count == 0


# -- the hand-off: a live subscriber writes to its transport ------------------------------


class Recorded(Endings):
    """The app's `Endings`, writing down each stream it ended and why."""

    def __init__(self, hub: Hub) -> None:
        self.metrics = Metrics()
        super().__init__(hub, self.metrics, 3000)
        self.ended_streams: list[tuple[Subscriber, Ending | None]] = []

    def ended(self, sub: Subscriber) -> None:
        self.ended_streams.append((sub, sub.ending))
        super().ended(sub)

    def slow_consumers(self) -> float:
        value = self.metrics.registry.get_sample_value("roomlogs_slow_consumer_closes_total")
        return value or 0.0


async def test_attach_becomes_the_protocol_and_writes_what_queued_during_the_replay() -> None:
    hub = Hub()
    sub = Subscriber("a", 10)
    hub.add(sub)
    msgs = [message("a", i) for i in range(5)]
    for msg in msgs:
        hub.dispatch(msg)
    hub.flush()  # queued: the stream is still replaying
    sink = SinkTransport()
    key = msgs[2].key
    assert key is not None
    sub.replayed("a", key)  # the replay sent 0..2
    conn = sub.attach(sink, chunked=False)
    assert sink.get_protocol() is conn
    assert sink.writes == [msgs[3].frame + msgs[4].frame]  # once, without what was replayed


async def test_live_messages_go_out_as_one_write_per_loop_turn() -> None:
    hub = Hub()
    sub = Subscriber("a", 10)
    hub.add(sub)
    sink = SinkTransport()
    conn = sub.attach(sink, chunked=True)
    msgs = [message("a", i) for i in range(3)]
    for msg in msgs:
        hub.dispatch(msg)
    assert sink.writes == []  # nothing until the loop turn's flush
    body = b"".join(m.frame for m in msgs)
    assert await sink.next_write() == b"%x\r\n%b\r\n" % (len(body), body)
    hub.dispatch(message("a", 3))
    assert await sink.next_write() == message("a", 3).chunk  # a lone log: its pre-made chunk
    assert conn.sent == 4


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


async def test_a_paused_transport_queues_and_resume_flushes_in_order() -> None:
    hub = Hub()
    sub = Subscriber("a", 10)
    hub.add(sub)
    sink = SinkTransport()
    conn = sub.attach(sink, chunked=False)
    conn.pause_writing()
    msgs = [message("a", i) for i in range(3)]
    for msg in msgs:
        hub.dispatch(msg)
    hub.flush()
    assert sink.writes == []
    assert sub.queued == 3
    conn.resume_writing()
    assert sink.writes == [b"".join(m.frame for m in msgs)]
    assert sub.queued == 0


async def test_a_transport_that_stays_paused_makes_a_slow_consumer() -> None:
    hub = Hub()
    endings = Recorded(hub)
    sub = Subscriber("a", 3, owner=endings)
    hub.add(sub)
    sub.attach(SinkTransport(), chunked=False).pause_writing()
    for i in range(4):
        hub.dispatch(message("a", i))
    hub.flush()
    assert sub.ending is Ending.SLOW_CONSUMER
    assert endings.ended_streams == [(sub, Ending.SLOW_CONSUMER)]
    assert len(hub) == 0


async def test_connection_lost_ends_the_subscription_once() -> None:
    hub = Hub()
    endings = Recorded(hub)
    sub = Subscriber("a", 10, owner=endings)
    hub.add(sub)
    sub.attach(SinkTransport(), chunked=False).connection_lost(None)
    sub.close(Ending.SHUTDOWN)  # the first reason wins; the owner hears once
    assert endings.ended_streams == [(sub, Ending.CLIENT_GONE)]
    assert sub.live is None
    hub.dispatch(message("a", 0))
    assert sub.queued == 0


def test_close_tells_the_owner_before_any_transport_exists() -> None:
    hub = Hub()
    endings = Recorded(hub)
    sub = Subscriber("a", 10, owner=endings)
    hub.add(sub)
    sub.close(Ending.TOKEN_EXPIRED)
    sub.close(Ending.SHUTDOWN)
    assert sub.ending is Ending.TOKEN_EXPIRED
    assert endings.ended_streams == [(sub, Ending.TOKEN_EXPIRED)]


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


def test_offer_after_close_is_ignored() -> None:
    sub = Subscriber("a", 1)
    sub.close(Ending.CLIENT_GONE)
    assert sub.offer(message("a", 0))
    assert sub.queued == 0


@pytest.mark.parametrize("limit", [1, 5])
def test_offer_refuses_exactly_past_the_limit(limit: int) -> None:
    sub = Subscriber("a", limit)
    assert all(sub.offer(message("a", i)) for i in range(limit))
    assert not sub.offer(message("a", limit))
    assert sub.queued == limit
