"""endings: a stream ends once, for the first reason, and its owner hears of it once."""

from __future__ import annotations

from service.endings import Ending
from service.hub import Hub
from service.subscriber import Subscriber
from tests.support.factories import message
from tests.support.recording import RecordedEndings
from tests.support.transports import SinkTransport


async def test_connection_lost_ends_the_subscription_once() -> None:
    hub = Hub()
    endings = RecordedEndings(hub)
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
    endings = RecordedEndings(hub)
    sub = Subscriber("a", 10, owner=endings)
    hub.add(sub)
    sub.close(Ending.TOKEN_EXPIRED)
    sub.close(Ending.SHUTDOWN)
    assert sub.ending is Ending.TOKEN_EXPIRED
    assert endings.ended_streams == [(sub, Ending.TOKEN_EXPIRED)]
