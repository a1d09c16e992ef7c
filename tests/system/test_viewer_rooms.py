"""The viewer for many rooms and daily use, in real headless Chromium against the real server.

Several rooms on one stream (badges, colours, the room filter, adding and removing a room
without losing the others' positions), long messages, safe links, search, downloads,
permalinks, UTC/local, the 390 px toolbar, final refusals with a way out, filters kept in the
URL, and the light theme. Every wait is on a page condition with a bounded timeout. The
screenshots in docs/screenshots/ come from docs/screenshots/take.py, not from here.
"""

# ruff: noqa: F811  (the browser fixtures are imported from test_viewer and used by name)
from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest
from playwright.async_api import Browser, BrowserContext, Page, Route

from service.cursor import Cursor
from service.cursor import parse as parse_cursor
from service.publisher import Publisher
from tests.support.factories import StartService, auth, sample_log, token
from tests.support.servers import RedisServer, ServiceProcess, debian_binary
from tests.system.test_viewer import (  # noqa: F401
    STATIC,
    WAIT_MS,
    browser,
    context,
    gateway,
    page,
    publish,
    rows,
    visible_ids,
    wait_rows,
    wait_state,
)


def rooms_url(base: str, rooms: list[str], hash_: str = "", **params: Any) -> str:
    query = urlencode({"rooms": ",".join(rooms), **params})
    return f"{base}/?{query}{hash_}"


def hash_params(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).fragment)


async def rooms_of_rows(page: Page) -> list[tuple[str, str]]:
    got = await page.evaluate(
        """() => [...document.querySelectorAll('#logs .row')]
            .map((r) => [r.dataset.room, r.dataset.id])"""
    )
    return [(room, id_) for room, id_ in got]


@pytest.fixture
def three(room: str) -> list[str]:
    return [f"{room}-a", f"{room}-b", f"{room}-c"]


async def test_several_rooms_on_one_stream_with_badges_and_colours(
    gateway: ServiceProcess, page: Page, three: list[str]
) -> None:
    streams: list[str] = []
    page.on(
        "request",
        lambda r: streams.append(r.url) if r.resource_type == "eventsource" else None,
    )
    history = {
        r: await publish(gateway, r, [sample_log(i, message=f"{r} old {i}") for i in range(2)])
        for r in three
    }
    await page.goto(rooms_url(gateway.url, three, access_token=token()))
    await wait_state(page, "live")
    await wait_rows(page, 6)
    live = {r: await publish(gateway, r, [sample_log(9, message=f"{r} new")]) for r in three}
    await wait_rows(page, 9)

    got = await rooms_of_rows(page)
    for r in three:  # each room in publish order, with each log's own stream id
        assert [i for room, i in got if room == r] == history[r] + live[r]
    assert len(streams) == 1, streams
    assert "/api/v1/logs?rooms=" in streams[0]
    assert "access_token" not in page.url  # kept in the tab, out of the address bar

    badges = page.locator("#logs .row .badge")
    assert await badges.all_inner_texts() == [room for room, _ in got]
    colours = await page.evaluate(
        """(rooms) => rooms.map((r) => getComputedStyle(
            document.querySelector(`#logs .row[data-room="${r}"] .badge`)).color)""",
        three,
    )
    assert len(set(colours)) == 3, colours
    chips = page.locator("#room-list .room-chip")
    assert await chips.count() == 3
    assert await page.locator("#room-list .room-count").all_inner_texts() == ["3", "3", "3"]


async def test_room_filter_hides_a_room_and_is_kept_in_the_url(
    gateway: ServiceProcess, page: Page, three: list[str]
) -> None:
    ids = {r: await publish(gateway, r, [sample_log(i) for i in range(2)]) for r in three}
    await page.goto(rooms_url(gateway.url, three, access_token=token()))
    await wait_rows(page, 6)
    await page.locator(f'#room-list [data-room="{three[1]}"] .room-toggle').click()
    assert await visible_ids(page) == ids[three[0]] + ids[three[2]]
    assert hash_params(page.url)["hide"] == [three[1]]
    assert await page.locator("#shown").inner_text() == "4 of 6 shown"

    await page.reload()
    await wait_rows(page, 6)
    assert await visible_ids(page) == ids[three[0]] + ids[three[2]]
    toggle = page.locator(f'#room-list [data-room="{three[1]}"] .room-toggle')
    assert await toggle.get_attribute("aria-pressed") == "false"
    await toggle.click()
    assert len(await visible_ids(page)) == 6
    assert "hide" not in hash_params(page.url)


async def test_filters_are_restored_from_the_url(
    gateway: ServiceProcess, page: Page, room: str
) -> None:
    logs = [
        sample_log(1, level="error", agentType="code", message="disk full"),
        sample_log(2, level="error", agentType="story", message="disk full too"),
        sample_log(3, level="info", agentType="code", message="disk ok"),
        sample_log(4, level="warn", agentType="code", message="cpu hot"),
    ]
    ids = await publish(gateway, room, logs)
    view = "#" + urlencode({"levels": "warn,error", "agent": "code", "q": "DISK", "tz": "utc"})
    await page.goto(rooms_url(gateway.url, [room], view, access_token=token()))
    await wait_rows(page, 4)
    assert await visible_ids(page) == [ids[0]]
    assert not await page.locator("#level-info").is_checked()
    assert await page.locator("#level-warn").is_checked()
    assert await page.locator("#agent-filter").input_value() == "code"
    assert await page.locator("#text-filter").input_value() == "DISK"
    assert await page.locator("#tz").get_attribute("aria-pressed") == "true"
    # And a change goes back into the URL.
    await page.locator("#level-info").check()
    assert hash_params(page.url)["levels"] == ["info,warn,error"]
    assert await visible_ids(page) == [ids[0], ids[2]]


async def test_adding_and_removing_rooms_keeps_every_position(
    gateway: ServiceProcess, page: Page, three: list[str]
) -> None:
    a, b, c = three
    streams: list[str] = []
    page.on(
        "request",
        lambda r: streams.append(r.url) if r.resource_type == "eventsource" else None,
    )
    published: dict[str, list[str]] = {r: [] for r in three}
    published[b] += await publish(gateway, b, [sample_log(i) for i in range(2)])  # b's history
    await page.goto(rooms_url(gateway.url, [a], access_token=token()))
    await wait_state(page, "live")
    published[a] += await publish(gateway, a, [sample_log(i) for i in range(3)])
    await wait_rows(page, 3)

    await page.locator("#add-room-input").fill(f"{b}, {c}")
    await page.locator("#add-room button").click()
    # Published while the page swaps streams: delivered once, by the old or the new stream.
    published[a] += await publish(gateway, a, [sample_log(i) for i in range(3, 5)])
    await wait_rows(page, 7)  # a's 5, and b's history (added rooms get history=N)
    await wait_state(page, "live")
    published[c] += await publish(gateway, c, [sample_log(20)])
    published[a] += await publish(gateway, a, [sample_log(21)])
    await wait_rows(page, 9)
    assert "rooms=a,b" not in page.url
    assert hash_params(page.url) == {}
    assert parse_qs(urlsplit(page.url).query)["rooms"] == [",".join(three)]
    resumed = [u for u in streams if "lastEventId=r1." in u]
    assert resumed, streams

    await page.locator(f'#room-list [data-room="{b}"] .room-remove').click()
    await page.wait_for_function(
        "(b) => !document.querySelector(`#logs .row[data-room='${b}']`)", arg=b, timeout=WAIT_MS
    )
    published[a] += await publish(gateway, a, [sample_log(30)])
    published[c] += await publish(gateway, c, [sample_log(31)])
    published[b] += await publish(gateway, b, [sample_log(32)])  # no longer followed
    await wait_rows(page, 9)  # 7 of a and 2 of c
    got = await rooms_of_rows(page)
    assert [i for room, i in got if room == a] == published[a]
    assert [i for room, i in got if room == c] == published[c]
    assert all(room != b for room, _ in got)
    assert await page.get_attribute("#logs", "data-duplicates") == "0"
    assert await page.locator("#room-list .room-chip").count() == 2
    assert parse_qs(urlsplit(page.url).query)["rooms"] == [f"{a},{c}"]


async def test_long_messages_collapse_with_show_all(
    gateway: ServiceProcess, page: Page, room: str
) -> None:
    long = "".join(f"line {i}: " + "x" * 70 + "\n" for i in range(40))
    await publish(gateway, room, [sample_log(1, message=long), sample_log(2, message="short")])
    await page.goto(rooms_url(gateway.url, [room], access_token=token()))
    await wait_rows(page, 2)
    first, second = page.locator("#logs .row").nth(0), page.locator("#logs .row").nth(1)
    shown = await first.locator(".msg").text_content()
    assert shown is not None
    assert len(shown) < 700
    assert long.startswith(shown)
    more = first.locator("button.more")
    assert "show all" in await more.inner_text()
    assert await second.locator("button.more").count() == 0
    height = (await first.bounding_box() or {"height": 0})["height"]
    await more.click()
    assert await first.locator(".msg").text_content() == long
    assert await more.inner_text() == "show less"
    assert (await first.bounding_box() or {"height": 0})["height"] > height * 3
    await more.click()
    assert await first.locator(".msg").text_content() == shown


async def test_links_are_made_only_from_http_urls(
    gateway: ServiceProcess, page: Page, room: str
) -> None:
    message = (
        "docs at https://example.test/a?b=1&c=2. or http://example.test/x) but not "
        "javascript:alert(document.domain) nor data:text/html,<b>x</b> "
        'nor https://evil.test/"><img src=x onerror=alert(1)>'
    )
    await publish(
        gateway,
        room,
        [sample_log(1, message=message, metadata={"url": "https://meta.example.test/p"})],
    )
    await page.goto(rooms_url(gateway.url, [room], access_token=token()))
    await wait_rows(page, 1)
    row = page.locator("#logs .row").first
    assert await row.locator(".msg").text_content() == message
    links = await row.locator(".msg a").evaluate_all(
        "(as) => as.map((a) => [a.getAttribute('href'), a.textContent, a.rel, a.target])"
    )
    assert links == [
        [
            "https://example.test/a?b=1&c=2",
            "https://example.test/a?b=1&c=2",
            "noopener noreferrer",
            "_blank",
        ],
        ["http://example.test/x", "http://example.test/x", "noopener noreferrer", "_blank"],
        ["https://evil.test/", "https://evil.test/", "noopener noreferrer", "_blank"],
    ]
    assert (
        await page.locator("#logs a[href^='javascript'], #logs a[href^='data'], #logs img").count()
        == 0
    )
    await row.locator("details.meta summary").click()
    assert await row.locator(".meta pre a").get_attribute("href") == "https://meta.example.test/p"


async def test_search_covers_metadata_and_highlights_matches(
    gateway: ServiceProcess, page: Page, room: str
) -> None:
    ids = await publish(
        gateway,
        room,
        [
            sample_log(1, message="the Needle is here"),
            sample_log(2, message="nothing", metadata={"where": "a needle in metadata"}),
            sample_log(3, message="hay only"),
        ],
    )
    await page.goto(rooms_url(gateway.url, [room], access_token=token()))
    await wait_rows(page, 3)
    await page.locator("#text-filter").fill("needle")
    assert await visible_ids(page) == ids[:2]
    assert await page.locator("#logs .row .msg mark").all_inner_texts() == ["Needle"]
    second = page.locator("#logs .row").nth(1)
    assert "hit" in (await second.locator("details.meta").get_attribute("class") or "")
    await second.locator("details.meta summary").click()
    assert await second.locator(".meta pre mark").all_inner_texts() == ["needle"]
    assert hash_params(page.url)["q"] == ["needle"]
    await page.locator("#text-filter").fill("")
    assert await page.locator("#logs mark").count() == 0
    assert await visible_ids(page) == ids


async def test_download_of_what_is_shown(gateway: ServiceProcess, page: Page, room: str) -> None:
    logs = [sample_log(i, level=lv) for i, lv in enumerate(["info", "error", "warn", "error"])]
    ids = await publish(gateway, room, logs)
    await page.goto(rooms_url(gateway.url, [room], access_token=token()))
    await wait_rows(page, 4)
    for level in ("info", "warn"):
        await page.locator(f"#level-{level}").uncheck()

    async with page.expect_download(timeout=WAIT_MS) as info:
        await page.locator("#download-ndjson").click()
    download = await info.value
    assert download.suggested_filename.endswith(".ndjson")
    path = await download.path()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [{"roomId": room, "id": ids[i], **logs[i]} for i in (1, 3)]

    await page.locator("#tz").click()  # text uses the zone shown: UTC here
    async with page.expect_download(timeout=WAIT_MS) as info:
        await page.locator("#download-text").click()
    text = (await (await info.value).path()).read_text()
    assert text.splitlines() == [
        f'2026-01-01 00:00:0{i}.000 {room} ERROR story: log {i} {{"step":{i}}}' for i in (1, 3)
    ]


async def test_permalink_marks_the_log_and_opens_it_later(
    gateway: ServiceProcess, context: BrowserContext, page: Page, room: str
) -> None:
    ids = await publish(gateway, room, [sample_log(i) for i in range(5)])
    await page.goto(rooms_url(gateway.url, [room], access_token=token()))
    await wait_rows(page, 5)
    link = page.locator(f'#logs .row[data-id="{ids[1]}"] a.time')
    href = await link.get_attribute("href")
    assert href is not None
    assert href.endswith(f"#log={room}/{ids[1]}")
    assert "access_token" not in href
    await link.click()
    assert hash_params(page.url)["log"] == [f"{room}/{ids[1]}"]
    assert await page.locator("#logs .row.target").get_attribute("data-id") == ids[1]

    # Opened elsewhere (here with the cookie, as a colleague would) and with no history, so
    # the log is not in the stream: the page fetches it from the room's history.
    await context.add_cookies([{"name": "roomlogs_token", "value": token(), "url": gateway.url}])
    other = await context.new_page()
    await other.goto(href.replace("?", "?history=0&", 1))
    linked = other.locator("#linked-log .row")
    await linked.wait_for(timeout=WAIT_MS)
    assert await linked.get_attribute("data-id") == ids[1]
    assert await linked.locator(".msg").inner_text() == "log 1"
    await wait_state(other, "live")
    # With history, the row in the stream is the one marked.
    third = await context.new_page()
    await third.goto(href)
    await third.wait_for_function(
        "(id) => document.querySelector('#logs .row.target')?.dataset.id === id",
        arg=ids[1],
        timeout=WAIT_MS,
    )
    await other.close()
    await third.close()


@pytest.fixture
async def kolkata(browser: Browser) -> AsyncIterator[Page]:
    ctx = await browser.new_context(
        timezone_id="Asia/Kolkata", viewport={"width": 1200, "height": 700}
    )
    try:
        yield await ctx.new_page()
    finally:
        await ctx.close()


async def test_dates_in_local_time_or_utc(
    gateway: ServiceProcess, kolkata: Page, room: str
) -> None:
    await publish(gateway, room, [sample_log(7, timestamp="2026-03-31T20:00:07.250Z")])
    await kolkata.goto(rooms_url(gateway.url, [room], access_token=token()))
    await wait_rows(kolkata, 1)
    time = kolkata.locator("#logs .row .time")
    tz = kolkata.locator("#tz")
    assert await time.inner_text() == "2026-04-01 01:30:07.250"  # IST, the next day
    assert await tz.inner_text() == "local (+05:30)"
    await tz.click()
    assert await time.inner_text() == "2026-03-31 20:00:07.250"
    assert await tz.inner_text() == "UTC"
    assert hash_params(kolkata.url)["tz"] == ["utc"]
    assert await time.locator("time").get_attribute("datetime") == "2026-03-31T20:00:07.250Z"


@pytest.fixture
async def phone(browser: Browser) -> AsyncIterator[Page]:
    ctx = await browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1)
    try:
        yield await ctx.new_page()
    finally:
        await ctx.close()


async def test_toolbar_fits_390_px(gateway: ServiceProcess, phone: Page, room: str) -> None:
    rooms = [f"{room}-frontend-build", f"{room}-b"]
    for r in rooms:
        await publish(
            gateway,
            r,
            [
                sample_log(
                    1, agentType="a-very-long-agent-name-that-does-not-fit", message="m " * 80
                )
            ],
        )
    await phone.goto(rooms_url(gateway.url, rooms, access_token=token()))
    await wait_rows(phone, 2)
    overflow = await phone.evaluate(
        """() => {
            const w = document.documentElement.clientWidth;
            const wide = [...document.querySelectorAll('header *, nav *, .toolbar *, #logs .row *')]
                .filter((e) => e.offsetParent !== null && e.getBoundingClientRect().right > w + 0.5)
                .map((e) => e.id || e.className || e.tagName);
            return { w, scroll: document.documentElement.scrollWidth, wide };
        }"""
    )
    assert overflow["w"] == 390
    assert overflow["scroll"] <= 390, overflow
    assert overflow["wide"] == [], overflow
    # The agent selector keeps its width whatever the agents' names.
    assert (await phone.locator("#agent-filter").bounding_box() or {"width": 999})["width"] < 160


async def test_final_refusal_is_shown_with_ways_out(
    gateway: ServiceProcess, page: Page, three: list[str]
) -> None:
    a, b, _ = three
    ids = await publish(gateway, a, [sample_log(1)])
    await page.goto(rooms_url(gateway.url, [a, b], access_token=token(rooms=a)))
    problem = page.locator("#problem")
    await problem.wait_for(state="visible", timeout=WAIT_MS)
    assert await page.get_attribute("#state", "data-state") == "closed"
    assert "HTTP 403" in await page.locator("#problem-title").inner_text()
    text = await page.locator("#problem-text").inner_text()
    assert text == f"HTTP 403: room '{b}' is not in the token's 'rooms' claim"
    assert await page.locator("#problem-text").is_visible()

    # Way out 1: drop the room the token does not cover.
    await problem.get_by_role("button", name=f"remove {b}").click()
    await wait_state(page, "live")
    await wait_rows(page, 1)
    assert await problem.is_hidden()
    assert await visible_ids(page) == ids


async def test_bad_token_can_be_replaced_in_the_page(
    gateway: ServiceProcess, page: Page, room: str
) -> None:
    ids = await publish(gateway, room, [sample_log(1)])
    await page.goto(rooms_url(gateway.url, [room], access_token="not-a-token"))
    await page.locator("#problem").wait_for(state="visible", timeout=WAIT_MS)
    assert (await page.locator("#problem-text").inner_text()).startswith("HTTP 401")
    await page.locator("#problem-token-input").fill(token())
    await page.locator("#problem-token button").click()
    await wait_state(page, "live")
    await wait_rows(page, 1)
    assert await visible_ids(page) == ids
    assert await page.locator("#problem").is_hidden()
    # The new token is this tab's: a reload keeps using it.
    await page.reload()
    await wait_state(page, "live")


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_theme_follows_the_system(
    gateway: ServiceProcess, page: Page, room: str, scheme: str
) -> None:
    await page.emulate_media(color_scheme=scheme)  # type: ignore[arg-type]
    await publish(gateway, room, [sample_log(1, level="error")])
    await page.goto(rooms_url(gateway.url, [room], access_token=token()))
    await wait_rows(page, 1)
    bg = await page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    fg = await page.evaluate("() => getComputedStyle(document.body).color")
    if scheme == "light":
        assert bg == "rgb(255, 255, 255)", bg
        assert fg == "rgb(31, 35, 40)", fg
    else:
        assert bg == "rgb(15, 17, 21)", bg


async def test_resumes_by_cursor_after_a_transient_refusal(
    service: StartService,
    redis_server: RedisServer,
    page: Page,
    three: list[str],
    tmp_path: Path,
) -> None:
    """The gateway comes back full (`event: unavailable`, then it closes the stream): the
    browser retries with the cursor as Last-Event-ID, and nothing is lost or repeated."""
    a, b, _ = three
    gw = await service(REDIS_URL=redis_server.url, RETRY_MS="200", MAX_CONNECTIONS="1")
    gate = asyncio.Event()
    gate.set()

    async def hold_streams(route: Route) -> None:
        if route.request.resource_type == "eventsource":
            await gate.wait()  # until the test lets the page's reconnect through
        await route.continue_()

    await page.route(lambda url: "/api/v1/logs" in url, hold_streams)
    await page.goto(rooms_url(gw.url, [a, b], access_token=token()))
    await wait_state(page, "live")
    first = await publish(gw, a, [sample_log(0)]) + await publish(gw, b, [sample_log(1)])
    await wait_rows(page, 2)

    gate.clear()
    gw.stop()
    await wait_state(page, "reconnecting")
    again = ServiceProcess(env=dict(gw.env), port=gw.port)
    again.start(tmp_path / "restarted.log")
    try:
        await again.wait_healthy()
        async with aiohttp.ClientSession() as http:
            holder = await http.get(
                f"{again.url}/api/v1/rooms/{a}/logs", headers=auth(), timeout=None
            )
            async with asyncio.timeout(WAIT_MS / 1000):
                while b"event: connected" not in await holder.content.readline():
                    pass
            async with Publisher(redis_url=redis_server.url) as pub:  # while the page is out
                during = [await pub.emit(a, "log 2"), await pub.emit(b, "log 3")]
            gate.set()
            await page.wait_for_function(
                "() => document.getElementById('state').dataset.reason.startsWith('max_conn')",
                timeout=WAIT_MS,
            )
            holder.close()
        await wait_state(page, "live")
        # A log published now comes after whatever the resumed stream replayed: had it not
        # resumed from the cursor, `history=100` would have sent the first two again.
        last = await publish(again, b, [sample_log(4)])
        await wait_rows(page, 5)
        got = await rooms_of_rows(page)
        assert [i for _, i in got] == first + during + last
        assert await page.get_attribute("#logs", "data-duplicates") == "0"
    finally:
        again.stop()


def test_cursor_js_reads_each_rooms_position_from_the_gateways_cursor() -> None:
    """static/cursor.js (in Node) against service/cursor.py: each room's own stream id, and
    null where the cursor holds a clamped position or the room is not in it."""
    node = debian_binary("nodejs", "node", "nodejs")
    epoch = 1_796_256_000_000
    positions: dict[str, tuple[int, int]] = {
        "alpha": (epoch + 41_391_285, 7),
        "beta.room-2": (epoch - 86_400_000 * 30, 0),  # a month before the stream's epoch
        "gamma_3": (0, 0),  # an empty room
        "delta": (epoch + 5, 300_000),  # more logs in one ms than the cursor holds: clamped
        "é-not-ascii-but-utf8": (epoch + 1, 1),
    }
    cursor = Cursor(positions, epoch)
    for r, key in positions.items():
        cursor.advance(r, key)
    text = cursor.encode().decode()
    script = (
        f"import {{ roomPosition }} from {json.dumps(str(STATIC / 'cursor.js'))};"
        "const [text, ...rooms] = process.argv.slice(1);"
        "console.log(JSON.stringify(rooms.map((r) => roomPosition(text, r))));"
    )
    rooms = [*positions, "not-followed"]
    done = subprocess.run(
        [node, "--input-type=module", "-e", script, text, *rooms],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert json.loads(done.stdout) == [
        f"{epoch + 41_391_285}-7",
        f"{epoch - 86_400_000 * 30}-0",
        "0-0",
        None,
        f"{epoch + 1}-1",
        None,
    ]
    assert parse_cursor(text, ["alpha"]) == {"alpha": positions["alpha"]}
