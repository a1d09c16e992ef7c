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


def take_buffered(reader: hiredis.Reader, batch: list[tuple[bytes, bytes]]) -> bool:
    """Append the messages already read from the socket to `batch`, in order, unawaited.

    Stops at the first incomplete reply (the next `get_message()` reads on), or after a
    subscribe confirmation: True then, and the caller handles it as `get_message()` would
    have. Replies `get_message()` ignores here (the health check's PONG) are skipped; an error
    reply is raised, as redis-py raises it, and the reader reconnects.
    """
    control = take_until_control(reader, batch)
    return control is not None and control[0] in (b"psubscribe", b"subscribe")


def take_until_control(
    reader: hiredis.Reader, batch: list[tuple[bytes, bytes]], *, pongs: bool = False
) -> list[Any] | None:
    """`take_buffered` for any subscriber: messages (`message`, `pmessage`, the Cluster's
    sharded `smessage`) go to `batch`; the first other pub/sub reply (a (un)subscribe
    confirmation, or a `sunsubscribe` Redis pushed because a slot moved) stops the walk and is
    returned, `[kind, channel, count]`, for the caller to handle in order.

    With `pongs`, a PING's answer stops it too, as `[b"pong", message]` (subscribed or not:
    SUBSCRIBE_MODE=rooms goes live on one); redis-py's health-check PONG is always skipped."""
    while (reply := reader.gets()) is not _NOT_ENOUGH_DATA:
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, bytes):  # a PING answered outside subscribed mode
            if pongs and reply != _HEALTH_CHECK:
                return [b"pong", reply]
            continue
        if not isinstance(reply, list) or not reply:
            continue
        kind: Any = reply[0]
        if kind == b"pmessage" and len(reply) == 4:
            batch.append((reply[2], reply[3]))
        elif kind in (b"message", b"smessage") and len(reply) == 3:
            batch.append((reply[1], reply[2]))
        elif (kind in _CONTROL and len(reply) == 3) or (
            pongs and kind == b"pong" and len(reply) == 2 and reply[1] != _HEALTH_CHECK
        ):
            return reply
    return None


_HEALTH_CHECK: Final = b"redis-py-health-check"  # redis-py's own PING (`PubSub.check_health`)
_CONTROL: Final = frozenset(
    (b"subscribe", b"psubscribe", b"ssubscribe", b"unsubscribe", b"punsubscribe", b"sunsubscribe")
)


def _redis_version() -> str:
    import redis

    return str(getattr(redis, "__version__", "?"))
