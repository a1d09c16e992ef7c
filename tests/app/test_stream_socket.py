"""A stream's socket carries TCP_USER_TIMEOUT (a dead peer is noticed at its first
unacknowledged heartbeat): set on the socket itself, or inherited from a listener that has it
(`roomlogs serve`), and then not set again."""

from __future__ import annotations

import socket

import pytest

from service import tcp_options
from service.state import STATE
from service.tcp_options import SEND_TIMEOUT_MS, TCP_USER_TIMEOUT
from tests.support.factories import MakeClient, auth
from tests.support.sse import SSEStream

pytestmark = pytest.mark.skipif(TCP_USER_TIMEOUT is None, reason="Linux's TCP_USER_TIMEOUT")


@pytest.mark.parametrize("on_listener", [False, True], ids=["per-stream", "inherited"])
async def test_a_streams_socket_has_the_user_timeout(
    make_client: MakeClient, room: str, monkeypatch: pytest.MonkeyPatch, on_listener: bool
) -> None:
    client = await make_client()
    state = client.app[STATE]
    if on_listener:
        runner = client.server.runner
        assert runner is not None
        assert all(tcp_options.set_on_listeners(site) for site in runner.sites)
        state.listeners_timed = True
    calls: list[object] = []
    per_stream = tcp_options.set_on_transport
    monkeypatch.setattr(tcp_options, "set_on_transport", lambda t: calls.append(per_stream(t)))
    async with client.get(f"/api/v1/rooms/{room}/logs", headers=auth()) as resp:
        assert (await SSEStream(resp).next()).event == "connected"
        [sub] = list(state.hub)
        assert sub.transport is not None
        sock = sub.transport.get_extra_info("socket")
        assert TCP_USER_TIMEOUT is not None
        assert sock.getsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT) == SEND_TIMEOUT_MS
    assert len(calls) == (0 if on_listener else 1)
