"""broker.script without Redis: the envelope `{"id":"…",…}` the publish script puts on the
channel (the script itself runs against Redis in tests/brokers/test_script.py)."""

from __future__ import annotations

import orjson
import pytest

from service.broker.script import envelope, split_envelope
from tests.support.factories import sample_log


@pytest.mark.parametrize(
    "stream_id",
    ["1234567890123456789-12345678901234567890", "18446744073709551615-18446744073709551615"],
)
def test_envelope_split_handles_the_longest_stream_ids(stream_id: str) -> None:
    got_id, _, body = split_envelope(envelope(stream_id, orjson.dumps(sample_log(0))))
    assert got_id == stream_id
    assert orjson.loads(body) == sample_log(0)
