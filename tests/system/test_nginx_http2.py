"""config/nginx.conf's two listeners seen from a real browser, and its room affinity.

Debian's nginx with the file as rendered by `servers.Nginx` (scripts/dev-cert's self-signed
certificate in its directory) in front of real gateways on the private Redis; Debian's Chromium
driven by Playwright. One page opens one `EventSource` per room, as a page showing many rooms
with the one-room route does:
- over TLS, HTTP/2: all 12 share one connection, all 12 are live;
- over plain HTTP/1.1: Chromium opens at most 6 connections to an origin, so the 7th stream
  waits (receives nothing) until one of the 6 is closed, then connects and receives.
The room affinity (the commented `hash` line, docs/nginx.md) in front of two gateways: every
stream of a room, and its publishes, reach the same gateway, seen from the gateways' own
/metrics while the streams are open and from nginx's access log after.

Every wait is on an event (a page condition, a logged line, a gauge) with a bounded timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.support.aio import poll_until
from tests.support.factories import StartService, auth, sample_log, token
from tests.support.nginx import affinity_nginx, streams_by_gateway, upstreams_of
from tests.support.servers import Nginx, RedisServer, ServiceProcess, debian_binary
from tests.support.sse import SSEStream

pytestmark = pytest.mark.system

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--ignore-certificate-errors",  # scripts/dev-cert's certificate is self-signed
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 10_000
HTTP1_CONNECTIONS = 6  # Chromium's limit per origin (scheme, host, port) over HTTP/1.1


# -- the deployment and the browser -----------------------------------------------------------


@pytest.fixture
async def gateway(service: StartService, redis_server: RedisServer) -> ServiceProcess:
    return await service(REDIS_URL=redis_server.url)


@pytest.fixture
async def nginx(gateway: ServiceProcess, tmp_path: Path) -> AsyncIterator[Nginx]:
    workdir = tmp_path / "nginx"
    workdir.mkdir()
    proxy = Nginx(workdir, [gateway.port])
    proxy.start()
    try:
        await proxy.wait_up()
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    """A tab of its own browser: no connection of another test to reuse or queue behind."""
    async with async_playwright() as pw:
        browser: Browser = await pw.chromium.launch(
            executable_path=debian_binary("chromium", "/usr/bin/chromium"), args=CHROMIUM_ARGS
        )
        try:
            yield await browser.new_page()
        finally:
            await browser.close()


# -- the page's EventSources ------------------------------------------------------------------

OPEN_STREAMS = """([rooms, token]) => {
    window.streams = rooms.map((room) => {
        const s = { room, connected: false, logs: [] };
        const q = new URLSearchParams({ access_token: token });
        s.es = new EventSource(`/api/v1/rooms/${room}/logs?${q}`);
        s.es.addEventListener('connected', () => { s.connected = true; });
        s.es.addEventListener('log', (e) => { s.logs.push(JSON.parse(e.data).message); });
        return s;
    });
}"""


async def open_event_sources(page: Page, base: str, rooms: list[str]) -> None:
    """A page of `base`'s origin (nginx's own health answer: no script of its own) opening one
    EventSource per room, with a relative URL as a page of the gateway would."""
    await page.goto(base + "/nginx-health")
    await page.evaluate(OPEN_STREAMS, [rooms, token()])


async def wait_connected(page: Page, count: int) -> None:
    await page.wait_for_function(
        "(n) => streams.filter((s) => s.connected).length === n", arg=count, timeout=WAIT_MS
    )


async def wait_logs(page: Page, indexes: list[int], message: str) -> None:
    """Until each stream of `indexes` received `message`."""
    await page.wait_for_function(
        "([ix, m]) => ix.every((i) => streams[i].logs.includes(m))",
        arg=[indexes, message],
        timeout=WAIT_MS,
    )


async def stream_states(page: Page) -> list[dict[str, Any]]:
    states: list[dict[str, Any]] = await page.evaluate(
        "() => streams.map((s) => ({ connected: s.connected, logs: s.logs, "
        "readyState: s.es.readyState }))"
    )
    return states


async def publish(gw: ServiceProcess, rooms: list[str], message: str) -> None:
    """One log to each room, straight to the gateway (the publisher's side is not nginx's)."""
    async with aiohttp.ClientSession() as http:
        for room in rooms:
            url = f"{gw.url}/api/v1/rooms/{room}/logs"
            async with http.post(url, json=[sample_log(1, message=message)], headers=auth()) as r:
                assert r.status == 202, await r.text()


async def logged_protocols(nginx: Nginx, count: int) -> list[str]:
    """The protocols of the first `count` stream requests nginx logged (a stream is logged once
    it ended)."""
    found: list[str] = []

    async def logged() -> bool:
        nonlocal found
        found = [e["protocol"] for e in nginx.access_entries() if e["path"].endswith("/logs")]
        return len(found) >= count

    await poll_until(logged, timeout=10)
    return found


# -- the two listeners ------------------------------------------------------------------------


async def test_http2_over_tls_carries_12_streams_of_one_page(
    page: Page, nginx: Nginx, gateway: ServiceProcess, room: str
) -> None:
    rooms = [f"{room}-{i}" for i in range(12)]
    await open_event_sources(page, nginx.tls_url, rooms)
    assert (
        await page.evaluate("() => performance.getEntriesByType('navigation')[0].nextHopProtocol")
        == "h2"
    )
    await wait_connected(page, 12)  # more than HTTP/1.1's 6: one connection, 12 streams

    await publish(gateway, rooms, "over http/2")
    await wait_logs(page, list(range(12)), "over http/2")
    assert all(s["logs"] == ["over http/2"] for s in await stream_states(page))

    # nginx saw HTTP/2 from the browser; the gateways get HTTP/1.1 (proxy_http_version).
    await page.evaluate("() => streams.forEach((s) => s.es.close())")
    assert await logged_protocols(nginx, 12) == ["HTTP/2.0"] * 12


async def test_plain_http1_holds_the_7th_stream_until_one_closes(
    page: Page, nginx: Nginx, gateway: ServiceProcess, room: str
) -> None:
    rooms = [f"{room}-{i}" for i in range(HTTP1_CONNECTIONS + 1)]
    await open_event_sources(page, nginx.url, rooms)
    assert (
        await page.evaluate("() => performance.getEntriesByType('navigation')[0].nextHopProtocol")
        == "http/1.1"
    )
    await wait_connected(page, HTTP1_CONNECTIONS)
    states = await stream_states(page)
    waiting = next(i for i, s in enumerate(states) if not s["connected"])
    live = [i for i in range(len(rooms)) if i != waiting]

    # The waiting room's log first: once the 6 others have theirs, it had its chance.
    await publish(gateway, [rooms[waiting]] + [rooms[i] for i in live], "first")
    await wait_logs(page, live, "first")
    states = await stream_states(page)
    assert states[waiting] == {"connected": False, "logs": [], "readyState": 0}  # CONNECTING
    async with aiohttp.ClientSession() as http:
        # The gateway's side: 6 streams, the 7th never reached it.
        assert await streams_by_gateway(http, [gateway.url], HTTP1_CONNECTIONS) == [6]

    # One closed: its connection goes, the waiting stream gets one and goes live.
    await page.evaluate("(i) => streams[i].es.close()", live[0])
    await wait_connected(page, HTTP1_CONNECTIONS + 1)  # the closed one stays marked connected
    await publish(gateway, [rooms[waiting]], "second")
    await wait_logs(page, [waiting], "second")
    assert (await stream_states(page))[waiting]["logs"] == ["second"]


# -- room affinity ----------------------------------------------------------------------------


@pytest.fixture
async def two_gateways(service: StartService, redis_server: RedisServer) -> list[ServiceProcess]:
    return [await service(REDIS_URL=redis_server.url) for _ in range(2)]


@pytest.fixture
async def affinity(two_gateways: list[ServiceProcess], tmp_path: Path) -> AsyncIterator[Nginx]:
    workdir = tmp_path / "nginx-affinity"
    workdir.mkdir()
    proxy = affinity_nginx(workdir, [gw.port for gw in two_gateways])
    check = proxy.check()
    assert check.returncode == 0, check.stderr  # `nginx -t` accepts it with the hash line on
    proxy.start()
    try:
        await proxy.wait_up()
        yield proxy
    finally:
        proxy.stop()


async def _streams_land_together(
    http: aiohttp.ClientSession,
    nginx: Nginx,
    gateways: list[ServiceProcess],
    path_and_query: str,
    streams: int = 3,
) -> str:
    """Open `streams` concurrent streams of `path_and_query` through nginx: all on one gateway
    by its /metrics while they are open, and by nginx's access log once closed. Returns that
    gateway's address."""
    since = nginx.access_size()
    responses = await asyncio.gather(
        *(http.get(nginx.url + path_and_query, headers=auth()) for _ in range(streams))
    )
    try:
        for resp in responses:
            assert resp.status == 200, await resp.text()
            assert (await SSEStream(resp).next()).event == "connected"
        counts = await streams_by_gateway(http, [gw.url for gw in gateways], streams)
        assert sorted(counts) == [0, streams], counts
        holder = f"127.0.0.1:{gateways[counts.index(streams)].port}"
    finally:
        for resp in responses:
            resp.close()
    path = path_and_query.split("?", 1)[0]
    assert await upstreams_of(nginx, since, path, streams) == [holder] * streams
    await streams_by_gateway(http, [gw.url for gw in gateways], 0)  # gone before the next
    return holder


async def test_room_affinity_sends_every_stream_of_a_room_to_one_gateway(
    affinity: Nginx, two_gateways: list[ServiceProcess], room: str
) -> None:
    async with aiohttp.ClientSession() as http:
        for i in range(3):
            name = f"{room}-{i}"
            holder = await _streams_land_together(
                http, affinity, two_gateways, f"/api/v1/rooms/{name}/logs"
            )
            # The room's publishes go there too (the same key).
            since = affinity.access_size()
            for n in range(3):
                async with http.post(
                    f"{affinity.url}/api/v1/rooms/{name}/logs",
                    json=[sample_log(n)],
                    headers=auth(),
                ) as r:
                    assert r.status == 202, await r.text()
            path = f"/api/v1/rooms/{name}/logs"
            assert await upstreams_of(affinity, since, path, 3) == [holder] * 3

        # The several-rooms route hashes on its `rooms=` list.
        await _streams_land_together(
            http, affinity, two_gateways, f"/api/v1/logs?rooms={room}-a,{room}-b"
        )

        # And the rooms spread over both gateways (24 rooms: all on one would be ~1e-5 likely).
        since = affinity.access_size()
        names = [f"{room}-spread-{i}" for i in range(24)]
        for name in names:
            async with http.post(
                f"{affinity.url}/api/v1/rooms/{name}/logs", json=[sample_log(0)], headers=auth()
            ) as r:
                assert r.status == 202, await r.text()
        entries = await _entries_for(affinity, since, len(names))
        assert {e["upstream"] for e in entries} == {f"127.0.0.1:{gw.port}" for gw in two_gateways}


async def _entries_for(nginx: Nginx, since: int, count: int) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []

    async def logged() -> bool:
        nonlocal entries
        entries = nginx.access_entries(since)
        return len(entries) >= count

    await poll_until(logged, timeout=10)
    return entries
