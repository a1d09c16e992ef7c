"""The one place that touches redis-py's private parser state: replies already buffered.

`PubSub.get_message()` costs a retry wrapper, a health check and a timeout context per
message, and one socket read under load holds hundreds of them. redis-py's hiredis parser keeps
the whole replies of that read in its `hiredis.Reader` (`PubSub.connection._parser._reader`,
and `redis._parsers.hiredis.NOT_ENOUGH_DATA` for "no whole reply": private names, the same
from redis-py 5 to 8.1). Taking them from there is what the next `get_message()` calls would
do, minus their overhead. Any other layout (the pure-Python parser, a redis-py that moved them)
gives `None`: one `get_message()` per message, correct, only slower, and logged as such.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import hiredis
from redis.asyncio.client import PubSub

log = logging.getLogger("service.broker")

try:
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH_DATA
except ImportError:  # pragma: no cover - another redis-py layout
    _NOT_ENOUGH_DATA = None

_announced: bool | None = None


def buffered_reader(pubsub: PubSub) -> hiredis.Reader | None:
    """The subscription connection's hiredis reader, or None to read through redis-py.

    Fetched after every `get_message()`: redis-py makes a new one when it reconnects.
    """
    if _NOT_ENOUGH_DATA is None:
        return None
    parser = getattr(pubsub.connection, "_parser", None)
    reader = getattr(parser, "_reader", None)
    return reader if isinstance(reader, hiredis.Reader) else None


def announce(pubsub: PubSub) -> bool:
    """Log which read path a fresh subscription takes (again only when it changes)."""
    global _announced
    batched = buffered_reader(pubsub) is not None
    if batched != _announced:
        _announced = batched
        if batched:
            log.info("redis reader: batch reads (whole replies from hiredis' buffer)")
        else:
            log.warning(
                "redis reader: one get_message() per message (redis-py %s has no hiredis "
                "buffer where roomlogs looks for it): correct, but slower under load",
                _redis_version(),
            )
    return batched


# What `take_buffered` stops at: (kind, name), the kind as Redis spells it (b"subscribe",
# b"unsubscribe", b"psubscribe", b"punsubscribe"; b"pong" for a PING's answer) and the
# channel, pattern or PING message it names.
Control = tuple[bytes, bytes]
_CONFIRMATIONS: Final = frozenset((b"subscribe", b"unsubscribe", b"psubscribe", b"punsubscribe"))
_HEALTH_CHECK: Final = b"redis-py-health-check"  # redis-py's own PING (`PubSub.check_health`)


def take_buffered(reader: hiredis.Reader, batch: list[tuple[bytes, bytes]]) -> Control | None:
    """Append the messages already read from the socket to `batch`, in order, unawaited.

    Stops at the first incomplete reply (the next `get_message()` reads on: None), or after a
    subscription confirmation or a PING's answer, returned for the caller to handle as
    `get_message()` would have: they change what the reader does next (a catch-up, a room's
    stream may replay), so nothing after them is taken first. redis-py's health-check PONG is
    skipped; an error reply is raised, as redis-py raises it, and the reader reconnects.
    """
    while (reply := reader.gets()) is not _NOT_ENOUGH_DATA:
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, bytes):  # a PING answered outside subscribed mode
            if reply != _HEALTH_CHECK:
                return b"pong", reply
            continue
        if not isinstance(reply, list) or not reply:
            continue
        kind: Any = reply[0]
        if kind == b"pmessage" and len(reply) == 4:
            batch.append((reply[2], reply[3]))
        elif kind == b"message" and len(reply) == 3:
            batch.append((reply[1], reply[2]))
        elif kind in _CONFIRMATIONS and len(reply) == 3:
            return kind, reply[1]
        elif kind == b"pong" and len(reply) == 2 and reply[1] != _HEALTH_CHECK:
            return b"pong", reply[1]
    return None


def _redis_version() -> str:
    import redis

    return str(getattr(redis, "__version__", "?"))
