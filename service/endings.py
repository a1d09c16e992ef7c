"""How a stream ends: the named endings, and the one place where every one of them happens.

`Subscriber.close(Ending.X)` is the only verb, whoever ends a stream (its client, the hub, the
drain, the housekeeping tick, the handler). It runs `Endings.ended` once: the stream leaves
the hub, a live connection gets its farewell (when the ending tells the client) and its last
chunk, the counters are taken, and one log line says why.
"""

from __future__ import annotations

import enum
import logging
import random
import time
from typing import TYPE_CHECKING, Final

from .events import unavailable_frame

if TYPE_CHECKING:
    from .hub import Hub
    from .metrics import Metrics
    from .subscriber import Subscriber

log = logging.getLogger("service.stream")

# A closing stream with more than this waiting in its socket buffer is not reading: abort it.
SLOW_SOCKET_BYTES: Final = 64 * 1024


class Ending(enum.Enum):
    """Why a stream ended, and whether its client is told (it may come back: elsewhere,
    later, or with a new token) with an `unavailable` event and a jittered `retry:`."""

    CLIENT_GONE = ("client_gone", False)
    SLOW_CONSUMER = ("slow_consumer", False)
    TOKEN_EXPIRED = ("token_expired", True)
    SHUTDOWN = ("shutdown", True)
    BROKER_UNAVAILABLE = ("broker_unavailable", True)

    def __init__(self, reason: str, tells_client: bool) -> None:
        self.reason = reason
        self.tells_client = tells_client


def jittered(base_ms: int) -> int:
    """Between RETRY_MS and twice that: no thundering herd of reconnects."""
    return int(base_ms + random.uniform(0, base_ms))  # noqa: S311 - not security


class Endings:
    """The `Owner` of every stream of the app: what happens once when one ends."""

    def __init__(self, hub: Hub, metrics: Metrics, retry_ms: int) -> None:
        self._hub = hub
        self._metrics = metrics
        self._retry_ms = retry_ms

    def farewell(self, ending: Ending) -> bytes | None:
        """What the client is told, if anything (also written by a handler still replaying)."""
        if not ending.tells_client:
            return None
        return unavailable_frame(ending.reason, jittered(self._retry_ms))

    def ended(self, sub: Subscriber) -> None:
        ending = sub.ending
        assert ending is not None
        hub = self._hub
        hub.remove(sub)
        conn, transport = sub.live, sub.transport
        sub.live = sub.transport = None  # the transport holds the connection: no cycle left
        metrics = self._metrics
        # Still replaying: its handler writes the farewell, unless it is stuck writing to a
        # client that does not read. Then the socket goes now (the write fails, the handler
        # ends): a stream no longer counted must not hold its buffers.
        replaying = transport if conn is None and transport is not None else None
        if replaying is not None and replaying.get_write_buffer_size() > SLOW_SOCKET_BYTES:
            replaying.abort()
        if conn is not None:
            conn.end(self.farewell(ending))
            metrics.events_sent.inc(conn.sent)
            metrics.bytes_sent.inc(conn.sent_bytes)
            conn.sent = conn.sent_bytes = 0
        metrics.connections.dec()
        metrics.rooms.set(hub.room_count)
        if ending is Ending.SLOW_CONSUMER:
            metrics.slow_consumers.inc()
        duration = time.monotonic() - sub.opened
        level = logging.WARNING if ending is Ending.SLOW_CONSUMER else logging.INFO
        log.log(
            level,
            "stream closed: room=%s reason=%s after %.1fs",
            sub.room,
            ending.reason,
            duration,
            extra={
                "room": sub.room,
                "reason": ending.reason,
                "request_id": sub.request_id,
                "duration_ms": round(duration * 1000, 1),
                **({"buffer": sub.limit} if ending is Ending.SLOW_CONSUMER else {}),
            },
        )
