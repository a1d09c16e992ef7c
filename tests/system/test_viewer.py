"""The built-in viewer (`GET /`) in real headless Chromium, against the real server and Redis.

Debian's `chromium` driven by Playwright (never a downloaded browser). Every wait is on a page
condition with a bounded timeout (`wait_for_function`, locators), never a sleep. The page's
predicates are arrow functions: the viewer's Content-Security-Policy forbids `eval`, and the
tests run under that policy as users do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from playwright.async_api import Browser, BrowserContext, Page, Route, async_playwright

from service.broker.keys import PLAIN
from service.publisher import Publisher
from tests.support.factories import StartService, auth, sample_log, token
from tests.support.paths import ROOT
from tests.support.servers import RedisServer, ServiceProcess, debian_binary, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STATIC = ROOT / "service" / "static"
WAIT_MS = 15_000
LEVEL_COLOURS = ["debug", "info", "success", "warn", "error"]


def chromium_binary() -> str:
    return debian_binary("chromium", CHROMIUM)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=chromium_binary(), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(viewport={"width": 1200, "height": 700})
    try:
        yield ctx
    finally:
        await ctx.close()


@pytest.fixture
async def page(context: BrowserContext) -> AsyncIterator[Page]:
    """A tab that fails the test on any uncaught JavaScript error or CSP violation."""
    tab = await context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on(
        "console",
        lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    yield tab
    assert errors == [], f"errors in the page: {errors}"


@pytest.fixture
async def gateway(service: StartService, redis_server: RedisServer) -> ServiceProcess:
    return await service(REDIS_URL=redis_server.url, RETRY_MS="200")


def viewer_url(base: str, room: str, **params: Any) -> str:
    query = {"room": room, **params}
    return f"{base}/?{urlencode(query)}"


async def publish(gw: ServiceProcess, room: str, logs: list[dict[str, Any]]) -> list[str]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{gw.url}/api/v1/rooms/{room}/logs", json=logs, headers=auth()) as r,
    ):
        assert r.status == 202, await r.text()
        ids: list[str] = (await r.json())["ids"]
        return ids


async def rows(page: Page) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = await page.evaluate(
        """() => [...document.querySelectorAll('#logs .row')].map((r) => ({
            id: r.dataset.id ?? null,
            level: r.dataset.level,
            agent: r.dataset.agent,
            message: r.querySelector('.msg').textContent,
            visible: !r.hidden && r.offsetParent !== null,
        }))"""
    )
    return result


async def visible_ids(page: Page) -> list[str]:
    return [r["id"] for r in await rows(page) if r["visible"]]


async def wait_rows(page: Page, count: int, timeout: float = WAIT_MS) -> None:
    await page.wait_for_function(
        "(n) => document.querySelectorAll('#logs .row').length === n", arg=count, timeout=timeout
    )


async def wait_state(page: Page, state: str, timeout: float = WAIT_MS) -> None:
    await page.wait_for_function(
        "(s) => document.getElementById('state').dataset.state === s", arg=state, timeout=timeout
    )


async def count(page: Page, element_id: str) -> int:
    value = await page.get_attribute(f"#{element_id}", "data-count")
    assert value is not None
    return int(value)


async def duplicates(page: Page) -> int:
    return int(await page.get_attribute("#logs", "data-duplicates") or "-1")


async def test_logs_appear_in_order_with_level_and_agent(
    gateway: ServiceProcess, page: Page, room: str
) -> None:
    before = await publish(gateway, room, [sample_log(i) for i in range(3)])
    await page.goto(viewer_url(gateway.url, room, access_token=token(), history=100))
    await wait_state(page, "live")
    await wait_rows(page, 3)  # recent history, loaded on open

    levels = ["debug", "info", "success", "warn", "error", "info"]
    agents = ["story", "asset", "code", "deploy", "code", "story"]
    live = await publish(
        gateway,
        room,
        [
            sample_log(10 + i, level=level, agentType=agent)
            for i, (level, agent) in enumerate(zip(levels, agents, strict=True))
        ],
    )
    await wait_rows(page, 9)

    got = await rows(page)
    assert [r["id"] for r in got] == before + live
    assert [r["message"] for r in got] == [f"log {i}" for i in [0, 1, 2, *range(10, 16)]]
    assert [r["level"] for r in got] == ["info"] * 3 + levels
    assert [r["agent"] for r in got] == ["story"] * 3 + agents
    assert all(r["visible"] for r in got)
    assert await count(page, "received") == 9
    assert await page.locator("#received").inner_text() == "9 received"
    assert await page.locator("#dropped").is_hidden()
    assert await duplicates(page) == 0
    assert await page.locator("#state").inner_text() == "live"

    # Each level has its own colour.
    colours = await page.evaluate(
        """(levels) => levels.map((l) => getComputedStyle(
            document.querySelector(`#logs .row[data-level="${l}"] .level`)).color)""",
        LEVEL_COLOURS,
    )
    assert len(set(colours)) == len(LEVEL_COLOURS), colours
    # Time is shown as a clock, with the full timestamp on the element.
    assert await page.locator("#logs .row .time time").first.get_attribute("datetime") == (
        "2026-01-01T00:00:00.000Z"
    )


async def test_metadata_expands_and_markup_stays_text(
    gateway: ServiceProcess, page: Page, room: str
) -> None:
    await page.goto(viewer_url(gateway.url, room, access_token=token()))
    await wait_state(page, "live")
    evil = '<img src=x onerror="window.__xss = 1"><script>window.__xss = 2</script>'
    await publish(
        gateway,
        room,
        [
            sample_log(
                1,
                message=evil,
                agentType='"><b id=agent-xss>x</b>',
                metadata={"html": "</pre><img src=y onerror='window.__xss = 3'>", "step": 1},
            )
        ],
    )
    await wait_rows(page, 1)
    row = page.locator("#logs .row").first
    assert await row.locator(".msg").inner_text() == evil
    assert await row.get_attribute("data-agent") == '"><b id=agent-xss>x</b>'
    details = row.locator("details.meta")
    assert await details.get_attribute("open") is None
    await details.locator("summary").click()
    await page.wait_for_function("() => document.querySelector('#logs details.meta').open")
    meta_text = await details.locator("pre").inner_text()
    assert '"html": "</pre><img src=y onerror=\'window.__xss = 3\'>"' in meta_text
    assert '"step": 1' in meta_text
    assert await page.evaluate("() => window.__xss === undefined")
    assert await page.locator("#logs img, #logs script, #agent-xss").count() == 0


async def test_reconnects_after_restart_without_duplicates_or_gaps(
    gateway: ServiceProcess, redis_server: RedisServer, page: Page, room: str, tmp_path: Path
) -> None:
    await page.goto(viewer_url(gateway.url, room, access_token=token()))
    await wait_state(page, "live")
    first = await publish(gateway, room, [sample_log(i) for i in range(5)])
    await wait_rows(page, 5)

    gateway.stop()
    await wait_state(page, "reconnecting")
    async with Publisher(redis_url=redis_server.url) as pub:  # stored in history meanwhile
        during = await pub.emit_many(room, [sample_log(i) for i in range(5, 10)])

    again = ServiceProcess(env=dict(gateway.env), port=gateway.port)
    again.start(tmp_path / "restarted.log")
    try:
        await again.wait_healthy()
        await wait_state(page, "live")
        after = await publish(again, room, [sample_log(i) for i in range(10, 13)])
        await wait_rows(page, 13)
        got = await rows(page)
        assert [r["id"] for r in got] == first + during + after
        assert [r["message"] for r in got] == [f"log {i}" for i in range(13)]
        assert await duplicates(page) == 0
        assert await count(page, "received") == 13
        assert await page.locator(".notice").count() == 0  # nothing was lost: no gap notice
    finally:
        again.stop()


async def test_resumes_by_id_when_the_browser_gives_up(
    gateway: ServiceProcess, redis_server: RedisServer, page: Page, room: str, tmp_path: Path
) -> None:
    """A non-200 answer (here a proxy's 502) makes EventSource give up for good: the page
    opens a new one itself and resumes with `lastEventId=` in the query."""
    fail_next = 0
    stream_urls: list[str] = []

    async def proxy(route: Route) -> None:
        nonlocal fail_next
        if route.request.resource_type == "eventsource":
            stream_urls.append(route.request.url)
            if fail_next:
                fail_next -= 1
                await route.fulfill(status=502, body="bad gateway", content_type="text/plain")
                return
        await route.continue_()

    await page.route(lambda url: "/logs" in url, proxy)
    await page.goto(viewer_url(gateway.url, room, access_token=token()))
    await wait_state(page, "live")
    first = await publish(gateway, room, [sample_log(i) for i in range(3)])
    await wait_rows(page, 3)

    fail_next = 1
    gateway.stop()
    await page.wait_for_function(
        "() => document.getElementById('state').dataset.reason.includes('retrying in')",
        timeout=WAIT_MS,
    )
    async with Publisher(redis_url=redis_server.url) as pub:
        during = await pub.emit_many(room, [sample_log(i) for i in range(3, 6)])
    again = ServiceProcess(env=dict(gateway.env), port=gateway.port)
    again.start(tmp_path / "restarted.log")
    try:
        await again.wait_healthy()
        await wait_state(page, "live")
        await wait_rows(page, 6)
        assert [r["id"] for r in await rows(page)] == first + during
        assert await duplicates(page) == 0
        assert fail_next == 0
        # The page's own new stream resumed from the cursor (the room's position in it).
        assert any("lastEventId=r1." in url for url in stream_urls), stream_urls
    finally:
        again.stop()


async def test_gap_after_reconnect_is_shown(
    gateway: ServiceProcess, redis_server: RedisServer, page: Page, room: str, tmp_path: Path
) -> None:
    await page.goto(viewer_url(gateway.url, room, access_token=token()))
    await wait_state(page, "live")
    first = await publish(gateway, room, [sample_log(i) for i in range(2)])
    await wait_rows(page, 2)

    gateway.stop()
    await wait_state(page, "reconnecting")
    async with Publisher(redis_url=redis_server.url) as pub:
        during = await pub.emit_many(room, [sample_log(i) for i in range(2, 7)])
    client = aioredis.Redis.from_url(redis_server.url)
    try:  # history keeps only the last two: logs 2..4 are gone for good
        await client.xtrim(PLAIN.history(room), maxlen=2, approximate=False)
    finally:
        await client.aclose()

    again = ServiceProcess(env=dict(gateway.env), port=gateway.port)
    again.start(tmp_path / "restarted.log")
    try:
        await again.wait_healthy()
        notice = page.locator('#notices .notice[data-kind="gap"]')
        await notice.wait_for(state="visible", timeout=WAIT_MS)
        text = await notice.inner_text()
        assert first[-1] in text
        assert during[3] in text
        await wait_rows(page, 4)
        assert [r["id"] for r in await rows(page)] == first + during[3:]
        assert await duplicates(page) == 0
    finally:
        again.stop()


async def test_keeps_at_most_1000_logs_and_counts_the_dropped(
    gateway: ServiceProcess, page: Page, room: str
) -> None:
    await page.goto(viewer_url(gateway.url, room, access_token=token()))
    await wait_state(page, "live")
    ids: list[str] = []
    for start in range(0, 1050, 100):
        batch = [sample_log(i) for i in range(start, min(start + 100, 1050))]
        ids += await publish(gateway, room, batch)

    await page.wait_for_function(
        "() => document.getElementById('received').dataset.count === '1050'", timeout=WAIT_MS
    )
    await wait_rows(page, 1000)
    got = await rows(page)
    assert [r["id"] for r in got] == ids[50:]
    assert got[0]["message"] == "log 50"
    assert got[-1]["message"] == "log 1049"
    assert await count(page, "dropped") == 50
    dropped = page.locator("#dropped")
    assert await dropped.is_visible()
    assert (await dropped.inner_text()).startswith("50 older dropped")
    assert await duplicates(page) == 0
    # Autoscroll: the console is scrolled to the newest row.
    assert await page.evaluate(
        """() => { const c = document.getElementById('console');
                   return c.scrollHeight - c.scrollTop - c.clientHeight < 24; }"""
    )


async def test_filters_hide_and_show_rows(gateway: ServiceProcess, page: Page, room: str) -> None:
    await page.goto(viewer_url(gateway.url, room, access_token=token()))
    await wait_state(page, "live")
    combos = [(lv, ag) for lv in LEVEL_COLOURS for ag in ("story", "code")]
    ids = await publish(
        gateway,
        room,
        [
            sample_log(i, level=lv, agentType=ag, message=f"{lv} from {ag} #{i}")
            for i, (lv, ag) in enumerate(combos)
        ],
    )
    await wait_rows(page, len(combos))
    by_id = dict(zip(ids, combos, strict=True))

    def expect(pred: Callable[[str, str], bool]) -> list[str]:
        return [i for i in ids if pred(*by_id[i])]

    assert await visible_ids(page) == ids

    await page.locator("#level-debug").uncheck()
    await page.locator("#level-info").uncheck()
    assert await visible_ids(page) == expect(lambda lv, ag: lv not in {"debug", "info"})

    await page.locator("#agent-filter").select_option("code")
    assert await visible_ids(page) == expect(
        lambda lv, ag: lv not in {"debug", "info"} and ag == "code"
    )
    assert await page.locator("#shown").inner_text() == "3 of 10 shown"

    # A log that arrives while filtered out is kept, hidden.
    late = await publish(gateway, room, [sample_log(99, level="debug", agentType="code")])
    await wait_rows(page, len(combos) + 1)
    assert late[0] not in await visible_ids(page)

    await page.locator("#text-filter").fill("error")
    assert await visible_ids(page) == expect(lambda lv, ag: lv == "error" and ag == "code")

    await page.locator("#text-filter").fill("")
    await page.locator("#agent-filter").select_option("")
    await page.locator("#level-debug").check()
    await page.locator("#level-info").check()
    assert await visible_ids(page) == ids + late
    assert await page.locator("#shown").is_hidden()


async def test_pause_holds_new_rows_until_resume(
    gateway: ServiceProcess, page: Page, room: str
) -> None:
    await page.goto(viewer_url(gateway.url, room, access_token=token()))
    await wait_state(page, "live")
    first = await publish(gateway, room, [sample_log(i) for i in range(2)])
    await wait_rows(page, 2)

    pause = page.locator("#pause")
    await pause.click()
    assert await pause.get_attribute("aria-pressed") == "true"
    held = await publish(gateway, room, [sample_log(i) for i in range(2, 5)])
    await page.wait_for_function(
        "() => document.getElementById('received').dataset.count === '5'", timeout=WAIT_MS
    )
    await page.wait_for_function(
        "() => document.getElementById('pause').textContent === 'Resume (3 new)'",
        timeout=WAIT_MS,
    )
    assert len(await rows(page)) == 2

    await pause.click()
    await wait_rows(page, 5)
    assert [r["id"] for r in await rows(page)] == first + held
    assert await pause.inner_text() == "Pause"


async def test_transient_refusal_retries_until_a_slot_frees(
    service: StartService, redis_server: RedisServer, context: BrowserContext, room: str
) -> None:
    gw = await service(REDIS_URL=redis_server.url, RETRY_MS="200", MAX_CONNECTIONS="1")
    first = await context.new_page()
    await first.goto(viewer_url(gw.url, room, access_token=token()))
    await wait_state(first, "live")

    second = await context.new_page()
    await second.goto(viewer_url(gw.url, room, access_token=token()))
    await second.wait_for_function(
        """() => { const s = document.getElementById('state');
                   return s.dataset.state === 'reconnecting'
                       && s.dataset.reason.startsWith('max_connections'); }""",
        timeout=WAIT_MS,
    )
    await first.close()
    await wait_state(second, "live")
    ids = await publish(gw, room, [sample_log(1)])
    await wait_rows(second, 1)
    assert await visible_ids(second) == ids


async def test_bad_token_closes_with_the_reason(
    gateway: ServiceProcess, page: Page, room: str
) -> None:
    await page.goto(viewer_url(gateway.url, room, access_token=token(rooms="another-room")))
    await wait_state(page, "closed")
    reason = await page.get_attribute("#state", "data-reason")
    assert reason is not None
    assert reason.startswith("HTTP 403")
    assert "another-room" not in reason
    assert room in reason


async def test_form_opens_a_room(gateway: ServiceProcess, page: Page, room: str) -> None:
    await page.goto(gateway.url + "/")
    form = page.locator("#connect")
    await form.wait_for(state="visible", timeout=WAIT_MS)
    assert await page.get_attribute("#state", "data-state") == "idle"
    await page.locator("#f-room").fill("not a room id!")
    assert await page.locator("#f-room").evaluate("(el) => el.validity.patternMismatch")
    await page.locator("#f-room").fill(room)
    await page.locator("#f-token").fill(token())
    await page.locator("#connect button[type=submit]").click()
    await wait_state(page, "live")
    assert f"rooms={room}" in page.url
    assert "access_token" not in page.url
    ids = await publish(gateway, room, [sample_log(1)])
    await wait_rows(page, 1)
    assert await visible_ids(page) == ids


# A page on a second origin --------------------------------------------------------------------

RAW_PAGE = """<!doctype html>
<meta charset="utf-8"><title>raw EventSource</title>
<script type="module">
  const q = new URLSearchParams(location.search);
  window.__events = [];
  window.__errors = 0;
  const es = new EventSource(q.get("src"), { withCredentials: q.get("cred") === "1" });
  window.__es = es;
  for (const type of ["connected", "log"]) {
    es.addEventListener(type, (e) => window.__events.push([type, e.data]));
  }
  es.addEventListener("error", () => { window.__errors += 1; });
</script>
"""


@pytest.fixture
async def other_origin() -> AsyncIterator[str]:
    """Another origin (same host, another port) serving the viewer's files and a bare page."""

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def raw(request: web.Request) -> web.Response:
        return web.Response(text=RAW_PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/raw.html", raw)
    app.router.add_static("/static/", STATIC, follow_symlinks=True)  # stream.js: clients/js
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("via", ["query", "cookie"])
async def test_other_origin_streams_when_allowed(
    service: StartService,
    redis_server: RedisServer,
    other_origin: str,
    context: BrowserContext,
    page: Page,
    room: str,
    via: str,
) -> None:
    gw = await service(
        REDIS_URL=redis_server.url, CORS_ORIGINS=f"http://example.test,{other_origin}"
    )
    params: dict[str, Any] = {"server": gw.url}
    if via == "query":
        params["access_token"] = token()
    else:
        await context.add_cookies([{"name": "roomlogs_token", "value": token(), "url": gw.url}])

    await page.goto(viewer_url(other_origin, room, **params))
    await wait_state(page, "live")
    ids = await publish(gw, room, [sample_log(i) for i in range(3)])
    await wait_rows(page, 3)
    assert [r["id"] for r in await rows(page)] == ids

    # What a bare EventSource on that origin sees.
    src = f"{gw.url}/api/v1/rooms/{room}/logs?" + urlencode(
        {"history": 3, **({"access_token": params["access_token"]} if via == "query" else {})}
    )
    raw = await context.new_page()
    await raw.goto(
        f"{other_origin}/raw.html?" + urlencode({"src": src, "cred": int(via == "cookie")})
    )
    await raw.wait_for_function(
        "() => window.__events.filter(([t]) => t === 'log').length === 3", timeout=WAIT_MS
    )
    events = await raw.evaluate("() => window.__events.map(([t]) => t)")
    assert events == ["connected", "log", "log", "log"]
    assert await raw.evaluate("() => window.__es.readyState") == 1  # OPEN


async def test_other_origin_is_refused_when_not_allowed(
    service: StartService,
    redis_server: RedisServer,
    other_origin: str,
    context: BrowserContext,
    page: Page,
    room: str,
) -> None:
    gw = await service(REDIS_URL=redis_server.url, CORS_ORIGINS="http://example.test")
    await publish(gw, room, [sample_log(i) for i in range(3)])  # history the page must not get

    await page.goto(viewer_url(other_origin, room, server=gw.url, access_token=token()))
    # The page cannot read the refusal (no CORS headers): it believes it after a few tries.
    await wait_state(page, "closed", timeout=30_000)
    reason = await page.get_attribute("#state", "data-reason")
    assert reason is not None
    assert "CORS_ORIGINS" in reason
    assert await rows(page) == []
    assert await count(page, "received") == 0

    src = f"{gw.url}/api/v1/rooms/{room}/logs?" + urlencode({"history": 3, "access_token": token()})
    raw = await context.new_page()
    await raw.goto(f"{other_origin}/raw.html?" + urlencode({"src": src}))
    # The browser fails the connection for good: an error, CLOSED, and no event at all.
    await raw.wait_for_function(
        "() => window.__errors > 0 && window.__es.readyState === 2", timeout=WAIT_MS
    )
    assert await raw.evaluate("() => window.__events") == []
