"""The only code that touches aiohttp's private names: a live stream leaves aiohttp.

aiohttp keeps ~16 KiB per connection (request, parser, handler tasks, timers) to read
requests; an SSE stream never reads again. After its head and replay, the handler makes the
stream's `Connection` the transport's protocol (public asyncio API), detaches aiohttp's
`RequestHandler` from the socket and returns; aiohttp finishes the request (access log)
without writing or closing anything. The private names, all of aiohttp 3.14 (`setup.cfg`
allows `>=3.14,<4`; CI runs the suite at the lowest and newest), besides
`StreamResponse._send_headers_immediately` (below):
- `request.protocol` (the `RequestHandler`) and its `transport` attribute, set to None: its
  `start()` / `finish_response()` then skip every write and the close;
- `request.task`, and `RequestHandler.connection_lost(None)` from its done-callback, which drops
  the connection from aiohttp's books as if the client had left.
Where they are missing, the stream is parked instead: the handler stays, waiting for the
stream's end, and aiohttp hears of the connection's loss from the stream's `Connection`
(correct, but with aiohttp's per-connection memory); a warning says so once.

`LogStreamResponse` is ours rather than aiohttp-sse's `EventSourceResponse`: that class is
made for a handler that stays (its ping task, `wait()`), and what a handed-off stream would
keep of it is four headers and TCP_USER_TIMEOUT, set here without its private method (or,
under `roomlogs serve`, inherited from the listening socket: tcp_options.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Final

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from .. import tcp_options
from ..connection import ParkedConnection
from ..subscriber import Subscriber

log = logging.getLogger("service.stream")

_announced: bool | None = None

_STREAM_HEADERS: Final = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: pass each event on at once
}


class LogStreamResponse(web.StreamResponse):
    """A `text/event-stream` body that a hand-off may take away from aiohttp.

    Once `handed_off`, the body belongs to the stream's `Connection`, which ends it itself:
    aiohttp's `write_eof` (from `finish_response`) does nothing.
    """

    # aiohttp's own switch (`web.Response` sets it): the head goes out with the first body
    # write, the stream's `connected` (and replay), in one send instead of two.
    _send_headers_immediately = False

    def __init__(self, headers: Mapping[str, str], *, user_timeout: bool = True) -> None:
        # One header dict, not aiohttp's `content_type` setter (it parses what it sets).
        super().__init__(status=200, headers={**headers, **_STREAM_HEADERS})
        # Whether its socket needs TCP_USER_TIMEOUT set (False: inherited from the listener).
        self._user_timeout = user_timeout
        self.handed_off = False

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        # aiohttp calls `prepare` again after the handler returned (`finish_response`); the
        # base class hands back the writer of a prepared response then.
        if not self.prepared:
            if self._user_timeout:
                tcp_options.set_on_transport(request.transport)
            self.enable_chunked_encoding()
        return await super().prepare(request)

    async def write_eof(self, data: bytes = b"") -> None:
        if not self.handed_off:
            await super().write_eof(data)


def can_detach(request: web.Request) -> bool:
    """Whether this aiohttp has the private names the hand-off needs (checked, then logged)."""
    handler = getattr(request, "protocol", None)
    ok = (
        hasattr(handler, "transport")
        and callable(getattr(handler, "connection_lost", None))
        and isinstance(getattr(request, "task", None), asyncio.Task)
    )
    _announce(ok)
    return ok


def _announce(detached: bool) -> None:
    global _announced
    if detached == _announced:
        return
    _announced = detached
    if detached:
        log.info("live streams leave aiohttp after their replay (hand-off)")
    else:
        log.warning(
            "aiohttp %s lacks the private names of the hand-off: each live stream keeps its "
            "handler and aiohttp's per-connection state (correct, more memory per stream)",
            _aiohttp_version(),
        )


async def hand_off(
    request: web.Request,
    resp: LogStreamResponse,
    sub: Subscriber,
    transport: asyncio.Transport,
    *,
    detach: bool | None = None,
) -> None:
    """Make `sub` live on `transport`; returns at once (detached) or when the stream ends."""
    assert not resp.keep_alive  # the handler made it close: aiohttp's loop ends after it
    detach = can_detach(request) if detach is None else detach
    resp.handed_off = True  # aiohttp's write_eof must not end the body: the stream goes on
    if not detach:
        # aiohttp's protocol stays told: its books and its handler end with the connection.
        parked = sub.attach(transport, chunked=resp.chunked, parked=transport.get_protocol())
        assert isinstance(parked, ParkedConnection)
        await _parked(parked)
        return
    sub.attach(transport, chunked=resp.chunked)
    handler = request.protocol
    handler.transport = None  # aiohttp can neither write to nor close the socket now
    # Once the request is finished (access log written), drop the connection from aiohttp's
    # books (its server's list, keep-alive timer, parser) as if the client had left.
    request.task.add_done_callback(lambda _: handler.connection_lost(None))


async def _parked(conn: ParkedConnection) -> None:
    ended = asyncio.get_running_loop().create_future()
    conn.on_end = ended
    if conn.sub.ending is None:
        await ended


def _aiohttp_version() -> str:
    import aiohttp

    return aiohttp.__version__
