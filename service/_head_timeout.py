"""The only code that touches aiohttp's private names for the request-head timeout.

aiohttp bounds no request head. Its `keepalive_timeout` closes a connection whose handler is
idle at the deadline, and the deadline is set when a kept-alive request ends and (from 3.14.4
only) when the connection opens; bytes that arrive do not move it, so a trickle is cut too, but
`web.AppRunner` leaves it at aiohttp's 3630 s, and 3.14.0-3.14.3 arm nothing at the connection's
opening: a socket that sends nothing, or half a head, stays open for good. Nothing counts either.

Here every connection must send a whole request head (request line and headers) within
`REQUEST_HEAD_TIMEOUT` of its opening, and a kept-alive one within that of the first byte of its
next request (the wait for that byte is `keepalive_timeout`'s: a load balancer's pooled
connection may idle longer than a head may take). A timer per connection is started in
`connection_made`, or by the first byte that is not the current request's body (aiohttp's
public `request_factory` tells us each request's body), and cancelled as soon as the parser has
a whole head. When it fires while aiohttp waits for a request, the connection is closed
(aiohttp's own `force_close`, as its keep-alive timeout does), counted and logged; while
aiohttp is still busy with the previous request (next bytes sent as its answer went out, or
pipelined), it looks again a timeout later. A request whose head is whole is never cut: its
body (bounded in size by `client_max_size`, not in time), its handler, its answer and a live
stream (handed off: `transport` is None or another protocol's; parked: a request in progress).

The private names, all of aiohttp 3.14.0 to 3.14.5 (`setup.cfg` allows `>=3.14,<4`; CI runs the
suite at the lowest and newest):
- `AppRunner._make_server`, overridden to build our `web.Server` subclass from the one aiohttp
  made, with that one's handler arguments (`Server._kwargs`);
- `RequestHandler._messages` (the parsed requests start() has not taken yet: a head is whole)
  and `RequestHandler._waiter` (pending while start() waits for a request: the only state in
  which aiohttp's keep-alive closes a connection, and ours).
Where they are missing, connections are served by aiohttp's own handler and a warning says that
heads are not timed; the active path is logged at start-up either way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import RawRequestMessage
from aiohttp.streams import StreamReader

log = logging.getLogger("service")

_PRIVATE_HANDLER_NAMES = ("_messages", "_waiter")


class HeadTimeoutRunner(web.AppRunner):
    """`web.AppRunner` whose connections must send each request head within `head_timeout`
    seconds; `on_timeout` is called once for each connection closed for that."""

    __slots__ = ("_head_timeout", "_on_timeout")

    def __init__(
        self,
        app: web.Application,
        *,
        head_timeout: float,
        on_timeout: Callable[[], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(app, **kwargs)
        self._head_timeout = head_timeout
        self._on_timeout = on_timeout

    def keepalive_inherited(self) -> None:
        """See `_HeadTimeoutServer.keepalive_inherited`; nothing with aiohttp's own server."""
        if isinstance(self.server, _HeadTimeoutServer):
            self.server.keepalive_inherited()

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        handler_kwargs = getattr(made, "_kwargs", None)
        names = all(hasattr(web.RequestHandler, name) for name in _PRIVATE_HANDLER_NAMES)
        if not (isinstance(handler_kwargs, dict) and names):
            _announce(False, self._head_timeout)
            return made  # aiohttp's own server and handlers: heads are not timed
        _announce(True, self._head_timeout)
        return _HeadTimeoutServer(made, handler_kwargs, self._head_timeout, self._on_timeout)


class _HeadTimeoutServer(web.Server):
    """aiohttp's `Server` (same handler, request factory and arguments) making our handlers."""

    def __init__(
        self,
        made: web.Server,
        handler_kwargs: dict[str, Any],
        head_timeout: float,
        on_timeout: Callable[[], None],
    ) -> None:
        loop = asyncio.get_running_loop()
        self._made_factory = made.request_factory
        super().__init__(
            made.request_handler,
            request_factory=self._request_of,
            handler_cancellation=made.handler_cancellation,
            loop=loop,
            **handler_kwargs,
        )
        self._head_loop = loop
        self._handler_kwargs = handler_kwargs
        self._head_timeout = head_timeout
        self._on_timeout = on_timeout

    def _request_of(
        self,
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: web.RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> web.BaseRequest:
        """aiohttp's request factory, told each request's body as start() takes it up."""
        if isinstance(protocol, _HeadTimedHandler):
            protocol.body = payload
        return self._made_factory(message, payload, protocol, writer, task)

    def keepalive_inherited(self) -> None:
        """The listening sockets carry SO_KEEPALIVE, which accepted sockets inherit: the
        handlers no longer set it on each (one `setsockopt` per connection, tcp_options.py)."""
        self._handler_kwargs["tcp_keepalive"] = False

    def __call__(self) -> web.RequestHandler:
        return _HeadTimedHandler(
            self,
            loop=self._head_loop,
            head_timeout=self._head_timeout,
            on_timeout=self._on_timeout,
            **self._handler_kwargs,
        )


class _HeadTimedHandler(web.RequestHandler):
    __slots__ = (
        "_head_bytes",
        "_head_started",
        "_head_timeout",
        "_head_timer",
        "_on_timeout",
        "body",
    )

    def __init__(
        self,
        manager: web.Server,
        *,
        head_timeout: float,
        on_timeout: Callable[[], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        self._head_timeout = head_timeout
        self._on_timeout = on_timeout
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_started = 0.0
        self._head_bytes = 0
        # The body of the request start() took up last (None before the first): bytes that
        # arrive while it is unfinished are that body's, the others a next request's head.
        self.body: StreamReader | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._messages:  # a whole head (or one the parser refused) waits for start()
            self._disarm()
            return
        if self._head_timer is None:
            if not data or (self.body is not None and not self.body.is_eof()):
                return  # the body of the request being handled: its head was whole
            # The first byte of a kept-alive connection's next request: while aiohttp waits
            # for it, or sent before start() is back to waiting (the previous answer just
            # written, or pipelined).
            self._arm()
        self._head_bytes += len(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        self.body = None
        super().connection_lost(exc)

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._head_started = loop.time()
        self._head_bytes = 0
        self._head_timer = loop.call_later(self._head_timeout, self._timed_out)

    def _check_again(self) -> None:
        loop = asyncio.get_running_loop()
        self._head_timer = loop.call_later(self._head_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _timed_out(self) -> None:
        self._head_timer = None
        transport = self.transport
        waiter = self._waiter
        if transport is None or transport.get_protocol() is not self:
            return  # closed, or a live stream's now (handed off or parked)
        if self._messages or (waiter is not None and waiter.done()):
            return  # a whole head is queued, or aiohttp is closing the connection
        if waiter is None:
            # start() is still busy with the previous request (its handler, its answer): that
            # one is never cut; the half-sent head behind it is looked at again later.
            self._check_again()
            return
        elapsed = asyncio.get_running_loop().time() - self._head_started
        peer = transport.get_extra_info("peername")
        remote = peer[0] if isinstance(peer, tuple) and peer else None
        self._on_timeout()
        # The address, the time and a byte count: never what was sent (a token may be in it).
        log.info(
            "request head timeout: closed a connection from %s after %.1fs (%s)",
            remote,
            elapsed,
            f"{self._head_bytes} bytes of a head" if self._head_bytes else "nothing sent",
            extra={
                "remote": remote,
                "reason": "request_head_timeout",
                "head_bytes": self._head_bytes,
                "duration_ms": round(elapsed * 1000, 1),
            },
        )
        self.force_close()


def _announce(usable: bool, head_timeout: float) -> None:
    if usable:
        log.info(
            "request heads must arrive within %gs of a connection's opening or of the next "
            "request's first byte (REQUEST_HEAD_TIMEOUT)",
            head_timeout,
        )
    else:
        log.warning(
            "aiohttp %s lacks the private names the request-head timeout needs: "
            "REQUEST_HEAD_TIMEOUT is not enforced and slow or missing heads are not counted",
            aiohttp.__version__,
        )
