"""filters: `level=` and `agentType=` decide what a stream gets, in the hub's fan-out."""

from __future__ import annotations

from service.filters import StreamFilter
from service.hub import Hub
from service.subscriber import Subscriber
from tests.support.factories import message
from tests.support.transports import SinkTransport

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
