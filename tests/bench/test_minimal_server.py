"""The minimal server writes the frames roomlogs writes: its envelope parse (kept inline for
speed) against `service.broker.envelope.split_envelope` and `service.events.log_frame`."""

from __future__ import annotations

import orjson
import pytest

from bench.systems.minimal_server import frame
from service.broker.envelope import Envelopes, split_envelope
from service.broker.keys import PLAIN, room_from_channel
from service.events import log_frame


@pytest.mark.parametrize("stream_id", ["1-0", "1764676800000-12", "18446744073709551615-7"])
def test_the_same_frame_as_roomlogs(stream_id: str) -> None:
    log = orjson.dumps({"level": "info", "message": "a", "metadata": {"sentAt": 1.5}})
    payload = Envelopes(b"secret").wrap(stream_id, log)
    parts = split_envelope(payload)
    assert parts is not None
    sid, _, _, body = parts
    assert sid == stream_id
    assert frame(payload) == log_frame(sid, body)


def test_a_foreign_payload_is_framed_without_an_id() -> None:
    payload = b'{"level":"info"}'
    assert split_envelope(payload) is None
    assert frame(payload) == log_frame(None, payload)


def test_the_room_is_the_slice_of_its_channel() -> None:
    channel = PLAIN.channel("a-room_1").encode()
    assert channel[5:-5] == b"a-room_1"  # what the minimal server's reader takes
    assert room_from_channel(channel) == "a-room_1"
