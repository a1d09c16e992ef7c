"""Per-message decoding and parsing: `service.message.decode` (envelope, JSON, Message),
`service.ids.parse_id`, `service.sse.Parser.feed`, and the envelope parse of the minimal
server against `service.broker.script.split_envelope`."""

from __future__ import annotations

from collections.abc import Callable

import orjson

from service import sse
from service.broker.script import envelope, split_envelope
from service.events import log_frame
from service.ids import parse_id
from service.message import decode

from ..systems.minimal_server import frame as minimal_frame
from .hub import log

PAYLOAD = envelope("1764676800000-12", orjson.dumps(log(12)))
MAX_BYTES = 65536


def decode_one() -> object:
    return decode("room", PAYLOAD, MAX_BYTES)


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
    stream_id, _, body = split_envelope(PAYLOAD)
    return log_frame(stream_id, body)


def minimal_server_frame() -> object:
    return minimal_frame(PAYLOAD)
