"""broker.envelope without Redis: the envelope `{"id":"…","rlmac":"…",…}` the publish scripts
put on the channel, and its tag (the scripts themselves run against Redis in
tests/brokers/test_script.py, which checks that Lua and Python compute the same tag)."""

from __future__ import annotations

import orjson
import pytest

from service.broker.envelope import Envelopes, is_envelope, split_envelope
from service.message import Rejected, decode_envelope
from tests.support.factories import sample_log

ENV = Envelopes(b"0123456789abcdef")


@pytest.mark.parametrize(
    "stream_id",
    ["1234567890123456789-12345678901234567890", "18446744073709551615-18446744073709551615"],
)
def test_envelope_split_handles_the_longest_stream_ids(stream_id: str) -> None:
    log = orjson.dumps(sample_log(0))
    parts = split_envelope(ENV.wrap(stream_id, log))
    assert parts is not None
    got_id, _, tag, body = parts
    assert (got_id, body) == (stream_id, log)
    assert ENV.verify(got_id, body, tag)


def test_an_empty_object_round_trips() -> None:
    payload = ENV.wrap("1-0", b"{}")
    assert orjson.loads(payload)["id"] == "1-0"  # still JSON on the channel
    parts = split_envelope(payload)
    assert parts is not None
    assert parts[3] == b"{}"


@pytest.mark.parametrize(
    "payload",
    [
        b'{"id":"20240101-7","message":"an ordinary log whose first field is id-shaped"}',
        b'{"id":"1700000000000-0","level":"info"}',  # the v1 envelope: now an ordinary log
        b'{"message":"x"}',
        b'{"id":"not an id","rlmac":"00000000000000000000","m":1}',
    ],
)
def test_what_is_not_an_envelope(payload: bytes) -> None:
    assert split_envelope(payload) is None
    if b"rlmac" not in payload:
        assert not is_envelope(payload)


def test_a_tag_made_without_the_secret_is_refused_as_forged() -> None:
    """Item 5: a plain PUBLISH cannot pass off an id, even copying the shape exactly."""
    log = orjson.dumps(sample_log(0))
    forged = Envelopes(b"a guess").wrap("1700000000000-0", log)
    assert is_envelope(forged)
    with pytest.raises(Rejected, match="forged"):
        decode_envelope("room-1", forged, 65536, ENV)
    # Nor can a real tag be moved to another id or another log.
    real = ENV.wrap("1700000000000-0", log)
    tag = split_envelope(real)[2]  # type: ignore[index]
    for stream_id, body in [("1700000000000-1", log), ("1700000000000-0", log[:-1] + b',"x":1}')]:
        moved = b'{"id":"%b","rlmac":"%b",%b' % (stream_id.encode(), tag, body[1:])
        with pytest.raises(Rejected, match="forged"):
            decode_envelope("room-1", moved, 65536, ENV)
    assert decode_envelope("room-1", real, 65536, ENV).id == "1700000000000-0"


def test_the_previous_secret_is_still_accepted_after_a_change() -> None:
    """Redis lost the key and a gateway made a new one: envelopes tagged by a gateway that has
    not re-read it yet still pass, and new ones too."""
    old, env = Envelopes(b"old"), Envelopes(b"old")
    assert env.adopt(b"new")
    assert not env.adopt(b"new")
    log = orjson.dumps(sample_log(0))
    for sender in (old, Envelopes(b"new")):
        parts = split_envelope(sender.wrap("1-0", log))
        assert parts is not None
        assert env.verify("1-0", log, parts[2])
    assert env.secret == b"new"
