"""Take the viewer's screenshots in docs/screenshots/ with Debian's Chromium and Playwright.

    .venv/bin/python docs/screenshots/take.py

Starts `python -m service serve` on the embedded broker and a free port, publishes logs of a
small multi-agent run to three rooms, and shoots the viewer: viewer-rooms.png (dark, three
rooms, a search), viewer-light.png (the light theme), viewer-390.png (a phone's width) and
viewer-error.png (a final refusal with its ways out). Never downloads a browser.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from playwright.async_api import Browser, async_playwright

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from service.auth import mint_token  # noqa: E402

SECRET = secrets.token_urlsafe(32)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
ROOMS = ["novel-42", "cover-art", "deploy-prod"]
TRACE = "\n".join(
    ["TypeError: scene.assets is undefined"]
    + [f"    at loadScene (src/scenes/act{i}.ts:{40 + i})" for i in range(1, 14)]
)

# room, agent, level, message, metadata
LOGS: list[tuple[str, str, str, str, dict[str, Any]]] = [
    ("novel-42", "story", "info", "Outline requested: 3 acts, 12 scenes", {}),
    ("cover-art", "asset", "info", "Rendering cover art 1024x1536", {}),
    ("novel-42", "story", "success", "Act 1 drafted (4 scenes)", {"act": 1, "words": 2310}),
    ("cover-art", "asset", "warn", "Upscaler busy, retrying in 2 s", {"attempt": 2}),
    ("novel-42", "code", "error", TRACE, {"file": "src/scenes.ts", "line": 41}),
    ("deploy-prod", "deploy", "info", "Building preview image", {}),
    ("novel-42", "code", "success", "Fix applied, 27 tests pass", {"tests": 27}),
    ("cover-art", "asset", "success", "Cover ready: https://cdn.example/covers/42.png", {}),
    ("deploy-prod", "deploy", "debug", "Pushed image sha256:9f2c…e1", {}),
    ("deploy-prod", "deploy", "success", "Preview live at https://42.preview.example", {}),
    ("novel-42", "story", "info", "Act 2: scene 5 drafting", {}),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def publish_all(http: aiohttp.ClientSession, base: str, token: str) -> None:
    start = datetime.now(UTC) - timedelta(seconds=80)
    headers = {"Authorization": f"Bearer {token}"}
    for i, (room, agent, level, message, metadata) in enumerate(LOGS):
        ts = start + timedelta(seconds=i * 6.3 + (i % 3) * 0.417)
        stamp = ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        url = f"{base}/api/v1/rooms/{room}/logs"
        log = {"timestamp": stamp, "agentType": agent, "level": level, "message": message}
        if metadata:
            log["metadata"] = metadata
        async with http.post(url, json=log, headers=headers) as r:
            assert r.status == 202, await r.text()


async def shot(
    browser: Browser,
    url: str,
    name: str,
    *,
    width: int,
    height: int,
    scheme: str,
    search: str = "",
    expect_rows: int = len(LOGS),
    error: bool = False,
) -> None:
    ctx = await browser.new_context(
        viewport={"width": width, "height": height}, color_scheme=scheme, timezone_id="UTC"
    )
    page = await ctx.new_page()
    await page.goto(url)
    if error:
        await page.locator("#problem").wait_for(state="visible", timeout=15000)
    else:
        await page.wait_for_function(
            "(n) => document.querySelectorAll('#logs .row').length === n", arg=expect_rows
        )
        await page.locator('#logs .row:not([hidden])[data-level="success"] summary').first.click()
    if search:
        await page.locator("#text-filter").fill(search)
    await page.screenshot(path=str(HERE / name))
    await ctx.close()


async def shoot(base: str) -> None:
    token = mint_token(SECRET, rooms=["*"], publish=["*"], ttl=600)
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.get(base + "/readyz") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        await publish_all(http, base, token)
    query = urlencode({"rooms": ",".join(ROOMS), "access_token": token})
    url = f"{base}/?{query}".replace("%2C", ",")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        try:
            await shot(browser, url, "viewer-rooms.png", width=1280, height=720, scheme="dark")
            await shot(
                browser,
                url,
                "viewer-light.png",
                width=1280,
                height=720,
                scheme="light",
                search="scene",
            )
            await shot(browser, url, "viewer-390.png", width=390, height=844, scheme="dark")
            bad = f"{base}/?" + urlencode(
                {
                    "rooms": "novel-42,secret-room",
                    "access_token": mint_token(SECRET, rooms=["novel-42"], publish=[], ttl=600),
                }
            )
            await shot(
                browser, bad, "viewer-error.png", width=1000, height=480, scheme="dark", error=True
            )
        finally:
            await browser.close()


def main() -> None:
    port = free_port()
    env = {**os.environ, "JWT_SECRET": SECRET, "PORT": str(port), "LISTEN_HOST": "127.0.0.1"}
    env.pop("REDIS_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        asyncio.run(shoot(f"http://127.0.0.1:{port}"))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
