"""Per-message decoding and parsing: `service.message.decode_envelope` (envelope, its tag,
JSON, Message), `service.ids.parse_id`, `service.sse.Parser.feed`, and the envelope parse of
the minimal server against `service.broker.envelope.split_envelope`."""

from __future__ import annotations

from collections.abc import Callable

import orjson

from service import sse
from service.broker.envelope import Envelopes, split_envelope
from service.events import log_frame
from service.ids import parse_id
from service.message import decode_envelope

from ..systems.minimal_server import frame as minimal_frame
from .hub import log

ENVELOPES = Envelopes(b"0123456789abcdef0123456789abcdef")
PAYLOAD = ENVELOPES.wrap("1764676800000-12", orjson.dumps(log(12)))
MAX_BYTES = 65536
_ID, _, _TAG, _BODY = split_envelope(PAYLOAD) or ("", (0, 0), b"", b"")


def decode_one() -> object:
    return decode_envelope("room", PAYLOAD, MAX_BYTES, ENVELOPES)


def verify_tag() -> object:
    """The envelope's tag alone: what `decode_envelope` spends on telling it is the service's."""
    return ENVELOPES.verify(_ID, _BODY, _TAG)


def parse_ids(count: int) -> Callable[[], object]:
    ids = [f"1764676800{i:03d}-{i % 7}" for i in range(count)]

    def run() -> object:
        for text in ids:
            parse_id(text)
        return None

    return run


def sse_feed(events: int) -> Callable[[], object]:
    """One read holding `events` log frames, fed to a fresh parser."""
    chunk = b"".join(log_frame(f"1764676800000-{i}", orjson.dumps(log(i))) for i in range(events))

    def run() -> object:
        return sse.Parser().feed(chunk)

    return run


def split_envelope_frame() -> object:
    """What the minimal server would do with `split_envelope`: parse, then frame."""
    parts = split_envelope(PAYLOAD)
    return log_frame(parts[0], parts[3]) if parts is not None else None


def minimal_server_frame() -> object:
    return minimal_frame(PAYLOAD)
