"""subscriber: one subscription's bounded queue, its replay position and its control slot,
without a socket."""

from __future__ import annotations

import pytest

from service.endings import Ending
from service.subscriber import Subscriber
from tests.support.factories import MS, message

# -- take() ----------------------------------------------------------------------------------------


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


# -- offer() ---------------------------------------------------------------------------------------


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


# -- control() -------------------------------------------------------------------------------------


def test_control_replaces_an_unsent_control_frame() -> None:
    sub = Subscriber("a", 10)
    sub.control(b"event: heartbeat\ndata: 1\n\n")
    sub.control(b"event: heartbeat\ndata: 2\n\n")
    assert sub.take()[0] == b"event: heartbeat\ndata: 2\n\n"
    assert sub.take()[0] == b""
