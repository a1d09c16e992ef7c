"""Take docs/viewer.png: the built-in viewer in Debian's Chromium, driven by Playwright.

    .venv/bin/python docs/viewer_screenshot.py

Starts `python -m service serve` on the embedded broker and a free port, publishes a few logs,
opens the viewer and saves the screenshot next to this file. Needs /usr/bin/chromium
(`apt-get install chromium`) and `pip install playwright`; it never downloads a browser.
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
from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.auth import mint_token  # noqa: E402

SECRET = secrets.token_urlsafe(32)
ROOM = "demo-room-42"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

LOGS: list[dict[str, Any]] = [
    {"agentType": "story", "level": "info", "message": "Outline requested: 3 acts, 12 scenes"},
    {"agentType": "story", "level": "debug", "message": "Prompt tokens: 1,842",
     "metadata": {"model": "story-large", "temperature": 0.7}},
    {"agentType": "story", "level": "success", "message": "Act 1 drafted (4 scenes)",
     "metadata": {"act": 1, "scenes": 4, "words": 2310}},
    {"agentType": "asset", "level": "info", "message": "Rendering cover art 1024x1536"},
    {"agentType": "asset", "level": "warn", "message": "Upscaler busy, retrying in 2 s",
     "metadata": {"attempt": 2, "queue": "gpu-a"}},
    {"agentType": "code", "level": "info", "message": "Generating scene loader for act 1"},
    {"agentType": "code", "level": "error", "message": "TypeError: scene.assets is undefined\n"
     "    at loadScene (scenes.ts:41)", "metadata": {"file": "src/scenes.ts", "line": 41}},
    {"agentType": "code", "level": "success", "message": "Fix applied, 27 tests pass",
     "metadata": {"tests": 27, "durationMs": 4180}},
    {"agentType": "asset", "level": "success", "message": "Cover art ready",
     "metadata": {"url": "https://cdn.example/covers/42.png", "bytes": 1893342}},
    {"agentType": "deploy", "level": "info", "message": "Building preview image"},
    {"agentType": "deploy", "level": "success", "message": "Preview live at https://42.preview.example"},
]  # fmt: skip


def stamped(logs: list[dict[str, Any]], start: datetime) -> list[dict[str, Any]]:
    """Spread the logs over a minute or so, as a real run would be."""
    out = []
    for i, log in enumerate(logs):
        ts = start + timedelta(seconds=i * 6.3 + (i % 3) * 0.417)
        out.append(
            {"timestamp": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"), **log}
        )
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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
        url = f"{base}/api/v1/rooms/{ROOM}/logs"
        logs = stamped(LOGS, datetime.now(UTC) - timedelta(seconds=75))
        headers = {"Authorization": f"Bearer {token}"}
        async with http.post(url, json=logs[:8], headers=headers) as r:
            assert r.status == 202, await r.text()
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = await browser.new_page(viewport={"width": 1100, "height": 640})
            query = urlencode({"room": ROOM, "access_token": token})
            await page.goto(f"{base}/?{query}")
            await page.wait_for_function(
                "() => document.querySelectorAll('#logs .row').length === 8"
            )
            async with http.post(url, json=logs[8:], headers=headers) as r:
                assert r.status == 202, await r.text()
            await page.wait_for_function(
                f"() => document.querySelectorAll('#logs .row').length === {len(LOGS)}"
            )
            await page.locator('#logs .row[data-level="error"] details summary').click()
            await page.screenshot(path=str(Path(__file__).with_name("viewer.png")))
            await browser.close()


def main() -> None:
    port = free_port()
    env = {**os.environ, "JWT_SECRET": SECRET, "PORT": str(port), "LISTEN_HOST": "127.0.0.1"}
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
