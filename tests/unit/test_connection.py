"""connection: after the hand-off a live subscriber writes to its transport (in memory here):
one write per loop turn, pause and resume, a transport that stays paused."""

from __future__ import annotations

from service.endings import Ending
from service.hub import Hub
from service.subscriber import Subscriber
from tests.support.factories import message
from tests.support.recording import RecordedEndings
from tests.support.transports import SinkTransport


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
    endings = RecordedEndings(hub)
    sub = Subscriber("a", 3, owner=endings)
    hub.add(sub)
    sub.attach(SinkTransport(), chunked=False).pause_writing()
    for i in range(4):
        hub.dispatch(message("a", i))
    hub.flush()
    assert sub.ending is Ending.SLOW_CONSUMER
    assert endings.ended_streams == [(sub, Ending.SLOW_CONSUMER)]
    assert len(hub) == 0
