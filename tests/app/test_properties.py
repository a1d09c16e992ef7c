"""Property-based, on the in-process app: whatever the order of publishes, disconnects and
reconnects, nothing is lost or duplicated while history holds the range (that the memory
broker's history never holds more than HISTORY_MAX is tests/brokers/test_memory.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import aiohttp
import orjson
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from service.app import create_app
from tests.support.factories import auth, sample_log
from tests.support.factories import settings as app_settings
from tests.support.sse import SSEStream

Step = tuple[str, int]

steps_strategy = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.integers(1, 6)),
        st.tuples(st.just("drop"), st.integers(0, 2)),
        st.tuples(st.just("reconnect"), st.integers(0, 2)),
    ),
    max_size=20,
)


@dataclass
class Client:
    resp: aiohttp.ClientResponse | None = None
    sse: SSEStream | None = None
    last_id: str | None = None
    received: list[str] = field(default_factory=list)


async def _connect(http: aiohttp.ClientSession, url: str, c: Client) -> None:
    # Resume after the last log seen; a client that saw none yet resumes from the start.
    headers = {**auth(), "Last-Event-ID": c.last_id or "0-0"}
    c.resp = await http.get(url, headers=headers)
    c.sse = SSEStream(c.resp)
    connected = await c.sse.next()
    assert connected.event == "connected"
    assert connected.json()["recovered"] is True


async def _catch_up(c: Client, published: int) -> None:
    assert c.sse is not None
    missing = published - len(c.received)
    if missing:
        for ev in await c.sse.collect(missing, timeout=10):
            c.received.append(ev.json()["message"])
            c.last_id = ev.id


async def _scenario(steps: list[Step]) -> None:
    app = create_app(app_settings(history_max=10_000))
    server = TestServer(app)
    await server.start_server()
    url = str(server.make_url("/api/v1/rooms/prop-room/logs"))
    published = 0
    clients = [Client() for _ in range(3)]
    try:
        async with aiohttp.ClientSession() as http:
            for c in clients:
                await _connect(http, url, c)
            for action, arg in steps:
                if action == "publish":
                    logs = [sample_log(published + i) for i in range(arg)]
                    async with http.post(url, data=orjson.dumps(logs), headers=auth()) as r:
                        assert r.status == 202
                    published += arg
                elif action == "drop" and clients[arg].resp is not None:
                    clients[arg].resp.close()  # type: ignore[union-attr]
                    clients[arg].resp = clients[arg].sse = None
                elif action == "reconnect" and clients[arg].resp is None:
                    await _connect(http, url, clients[arg])
                for c in clients:
                    if c.resp is not None:
                        await _catch_up(c, published)
            for c in clients:
                if c.resp is None:
                    await _connect(http, url, c)
                await _catch_up(c, published)
                assert c.resp is not None
                c.resp.close()
    finally:
        await server.close()
    expected = [f"log {i}" for i in range(published)]
    for c in clients:
        assert c.received == expected


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(steps=steps_strategy)
def test_any_publish_disconnect_reconnect_sequence_loses_nothing_and_repeats_nothing(
    steps: list[Step],
) -> None:
    asyncio.run(asyncio.wait_for(_scenario(steps), timeout=60))
