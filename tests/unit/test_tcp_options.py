"""TCP_USER_TIMEOUT set once on a listening socket reaches every socket it accepts (Linux),
which is what lets `roomlogs serve` skip the `setsockopt` per stream."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest
from aiohttp import web

from service import tcp_options
from service.tcp_options import SEND_TIMEOUT_MS, TCP_USER_TIMEOUT

pytestmark = pytest.mark.skipif(TCP_USER_TIMEOUT is None, reason="Linux's TCP_USER_TIMEOUT")


def _user_timeout(sock: socket.socket) -> int:
    assert TCP_USER_TIMEOUT is not None
    return int(sock.getsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT))


@pytest.mark.parametrize("on_listener", [True, False])
def test_an_accepted_socket_inherits_the_listeners_user_timeout(on_listener: bool) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        if on_listener:
            tcp_options.set_user_timeout(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        with socket.create_connection(listener.getsockname(), timeout=5) as client:
            accepted, _ = listener.accept()
            with accepted:
                assert _user_timeout(accepted) == (SEND_TIMEOUT_MS if on_listener else 0)
                keepalive = accepted.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
                assert keepalive == (1 if on_listener else 0)
                assert _user_timeout(client) == 0  # the other end's own, untouched


def _loops() -> list[Callable[[], asyncio.AbstractEventLoop]]:
    loops: list[Callable[[], asyncio.AbstractEventLoop]] = [asyncio.new_event_loop]
    try:
        import uvloop
    except ImportError:  # pragma: no cover - optional: the `speed` extra
        return loops
    return [*loops, uvloop.new_event_loop]


async def _one_answer(
    runner: web.AppRunner, after_listeners: Callable[[], None] | None = None
) -> str:
    """`runner` served on a port whose listener got the options, and the body of its answer
    to one GET."""
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    try:
        await site.start()
        assert tcp_options.set_on_listeners(site)
        if after_listeners is not None:
            after_listeners()
        [port] = [addr[1] for addr in runner.addresses]
        async with asyncio.timeout(10):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = await reader.read()
            writer.close()
        return answer.decode().rpartition("\r\n\r\n")[2]
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("loop_factory", _loops(), ids=lambda f: f.__module__)
def test_an_aiohttp_sites_connections_inherit_it(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """Through aiohttp and the loop `roomlogs serve` runs (uvloop's sockets are its own)."""

    async def handler(request: web.Request) -> web.Response:
        sock = request.transport.get_extra_info("socket") if request.transport else None
        assert sock is not None
        return web.Response(text=str(_user_timeout(sock)))

    async def main() -> str:
        app = web.Application()
        app.router.add_get("/", handler)
        return await _one_answer(web.AppRunner(app))

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        assert runner.run(main()) == str(SEND_TIMEOUT_MS)


def test_a_site_not_started_is_not_reported_as_timed() -> None:
    async def main() -> bool:
        runner = web.AppRunner(web.Application())
        await runner.setup()
        try:
            return tcp_options.set_on_listeners(web.TCPSite(runner, "127.0.0.1", 0))
        finally:
            await runner.cleanup()

    assert asyncio.run(main()) is False


def test_the_serve_runners_handlers_leave_keepalive_to_the_listener(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`roomlogs serve`'s runner: once its listeners have the options, its handlers set
    SO_KEEPALIVE on no connection, and every connection has it (and the user timeout)."""
    import aiohttp.web_protocol

    from service._head_timeout import HeadTimeoutRunner

    per_connection: list[object] = []
    monkeypatch.setattr(aiohttp.web_protocol, "tcp_keepalive", per_connection.append)

    async def handler(request: web.Request) -> web.Response:
        sock = request.transport.get_extra_info("socket") if request.transport else None
        assert sock is not None
        keepalive = sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
        return web.Response(text=f"{keepalive} {_user_timeout(sock)}")

    async def main() -> str:
        app = web.Application()
        app.router.add_get("/", handler)
        runner = HeadTimeoutRunner(app, head_timeout=5.0, on_timeout=lambda: None)
        return await _one_answer(runner, runner.keepalive_inherited)

    assert asyncio.run(main()) == f"1 {SEND_TIMEOUT_MS}"
    assert per_connection == []
