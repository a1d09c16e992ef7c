"""TCP_USER_TIMEOUT for the streams (and SO_KEEPALIVE): set once on the listening sockets,
inherited on accept.

Unacknowledged data older than SEND_TIMEOUT_MS makes the kernel abort the connection (Linux):
a hung peer is noticed at the first heartbeat it does not acknowledge, not when buffers fill.
Linux copies a listening socket's TCP options (TCP_USER_TIMEOUT among them) into each socket
it accepts, so setting it on the listeners after the site starts saves a `setsockopt` (and
uvloop's socket object built for it) on every handshake of a reconnect storm. Where the
listeners cannot be reached (`BaseSite._server`, aiohttp's private name, is missing), each
stream sets it on its own socket, as it always did.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Final

from aiohttp import web

SEND_TIMEOUT_MS: Final = 120_000
TCP_USER_TIMEOUT: Final = getattr(socket, "TCP_USER_TIMEOUT", None)
_TCP_FAMILIES: Final = (socket.AF_INET, socket.AF_INET6)


def set_user_timeout(sock: socket.socket) -> None:
    """On a TCP socket (a listener, or one stream's); nothing on another kind or platform."""
    if TCP_USER_TIMEOUT is not None and sock.family in _TCP_FAMILIES:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT, SEND_TIMEOUT_MS)


def set_on_transport(transport: asyncio.BaseTransport | None) -> None:
    """One stream's own socket: where its listener does not pass the option on."""
    if TCP_USER_TIMEOUT is None or transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        set_user_timeout(sock)


def set_on_listeners(site: web.BaseSite) -> bool:
    """Whether every socket `site` listens on now carries the option, and SO_KEEPALIVE
    (aiohttp's `tcp_keepalive`, set per connection unless told otherwise): then accepted
    sockets need neither set. False where the platform lacks it or the sockets cannot be
    reached."""
    if TCP_USER_TIMEOUT is None:
        return False
    server = getattr(site, "_server", None)
    sockets = getattr(server, "sockets", None)
    if not sockets or any(sock.family not in _TCP_FAMILIES for sock in sockets):
        return False
    for sock in sockets:
        set_user_timeout(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    return True
