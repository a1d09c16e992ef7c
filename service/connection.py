"""A live stream's socket after the hand-off: the transport's protocol, written by the hub.

From then on a stream is this object, its `Subscriber` and the transport: no task, no
request, no parser, no timer. Flow control is the transport's own: `pause_writing` stops
direct writes (frames queue in the subscriber, up to its bound), `resume_writing` flushes them.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .chunked import LAST, chunk
from .endings import SLOW_SOCKET_BYTES, Ending

if TYPE_CHECKING:
    from .subscriber import Subscriber


def _ignore(data: bytes) -> None:
    pass


class Connection(asyncio.Protocol):
    __slots__ = ("chunked", "paused", "sent", "sent_bytes", "sub", "transport")

    def __init__(self, transport: asyncio.Transport, sub: Subscriber, *, chunked: bool) -> None:
        self.transport = transport
        self.sub = sub
        self.chunked = chunked  # HTTP/1.1 chunks, or a close-delimited body (HTTP/1.0)
        self.paused = False  # the transport's buffer is over its high-water mark
        # Events and bytes written since the metrics last took them.
        self.sent = 0
        self.sent_bytes = 0

    def write(self, body: bytes, count: int) -> None:
        """`count` events, as one write (framed as one chunk)."""
        data = chunk(body) if self.chunked else body
        self.transport.write(data)
        self.sent += count
        self.sent_bytes += len(data)

    def end(self, farewell: bytes | None) -> None:
        """The end of the body, and of the connection: no handler is left to do it."""
        transport = self.transport
        if transport.is_closing():
            return
        if transport.get_write_buffer_size() > SLOW_SOCKET_BYTES:
            transport.abort()  # a client that does not read: nothing more will reach it anyway
            return
        if farewell is not None:
            transport.write(chunk(farewell) if self.chunked else farewell)
        if self.chunked:
            transport.write(LAST)
        transport.close()

    # -- asyncio.Protocol ------------------------------------------------------------------

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.sub.flush()

    # An SSE client has nothing more to say; whatever it sends is ignored. A plain function,
    # not a method: uvloop keeps `protocol.data_received` per transport, and a bound method
    # would be one more object (64 bytes) on every idle stream.
    data_received = staticmethod(_ignore)

    def connection_lost(self, exc: Exception | None) -> None:
        self.sub.close(Ending.CLIENT_GONE)


class ParkedConnection(Connection):
    """A stream whose handler stays (no hand-off, see _handoff.py): the two fields only it
    needs live here, not on every handed-off stream."""

    __slots__ = ("forward", "on_end")

    def __init__(
        self,
        transport: asyncio.Transport,
        sub: Subscriber,
        *,
        chunked: bool,
        forward: asyncio.BaseProtocol,
    ) -> None:
        super().__init__(transport, sub, chunked=chunked)
        # Resolved at the end: what the parked handler waits for.
        self.on_end: asyncio.Future[None] | None = None
        # The protocol this one replaced (aiohttp's `RequestHandler`), told of the connection's
        # loss: it still keeps books on it.
        self.forward = forward

    def end(self, farewell: bytes | None) -> None:
        if self.on_end is not None and not self.on_end.done():
            self.on_end.set_result(None)
        super().end(farewell)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.forward.connection_lost(exc)
