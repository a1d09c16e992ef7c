"""The resuming client of `bench.storm`: a `reader.Stream` that keeps the `id:` of the last log
it got, so it can reconnect with `Last-Event-ID` as an EventSource does, and says when its
handshake is done. Ids are kept as the server wrote them (roomlogs' stream ids, nchan's
`<time>:<tag>`): each server is resumed in its own format, never in another's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

from .reader import Framing, Recorder, Stream

ID_TAIL: Final = 128  # bytes kept between reads: an `id:` line cut by a read is read whole


def last_id(data: bytes) -> tuple[bytes | None, int]:
    """The value of the last complete `id:` line in `data`, and where the scan may resume."""
    pos = data.rfind(b"\nid: ")
    while pos >= 0:
        end = data.find(b"\n", pos + 5)
        if end >= 0:
            return data[pos + 5 : end], end
        pos = data.rfind(b"\nid: ", 0, pos)
    return None, 0


def with_last_event_id(request: bytes, last: bytes | None) -> bytes:
    """A GET with `Last-Event-ID: last` among its headers (unchanged when `last` is None)."""
    if last is None:
        return request
    assert request.endswith(b"\r\n\r\n")
    return request[:-2] + b"Last-Event-ID: " + last + b"\r\n\r\n"


class ResumingStream(Stream):
    """A `Stream` that keeps the `id:` of the last log it got, and says when its handshake is
    done: subscribed, and `want` logs (what it missed) received."""

    __slots__ = ("done_at", "id_tail", "last_id", "local_port", "on_done", "started", "want")

    def __init__(
        self,
        recorder: Recorder,
        framing: Framing,
        room: int,
        want: int,
        on_done: Callable[[], None],
    ) -> None:
        super().__init__(recorder, framing, room, sampled=False)
        self.want = want
        self.on_done = on_done
        self.last_id: bytes | None = None
        self.id_tail = b"\n"  # the body starts a line
        self.started = self.done_at = 0.0  # perf_counter: request sent, handshake done
        self.local_port = 0  # the client side's port: how the server's side is told apart

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        sockname = transport.get_extra_info("sockname")
        self.local_port = sockname[1] if sockname else 0

    def data_received(self, data: bytes) -> None:
        in_body = self.in_body
        super().data_received(data)
        if in_body:
            buf = self.id_tail + data
        else:  # the first read holds the response head: only what follows it
            head_end = data.find(b"\r\n\r\n")
            buf = b"\n" + data[head_end + 4 :] if head_end >= 0 else b""
        found, _ = last_id(buf)
        if found is not None:
            self.last_id = found
        self.id_tail = buf[-ID_TAIL:]
        if (
            not self.done_at
            and self.error is None
            and self.connected.done()
            and self.received >= self.want
        ):
            self.done_at = time.perf_counter()
            self.on_done()
