"""`roomlogs tail ROOM`: follow a room in a terminal, coloured by level, resuming by id."""

from __future__ import annotations

import asyncio
import sys
from typing import Any, TextIO

import aiohttp
import orjson

from .events import EventName
from .sse import iter_events

_COLOURS = {
    "debug": "\033[2m",
    "info": "\033[36m",
    "success": "\033[32m",
    "warn": "\033[33m",
    "error": "\033[31;1m",
}
_RESET = "\033[0m"


def format_log(log: dict[str, Any], colour: bool) -> str:
    level = str(log.get("level", "?"))
    head = f"{log.get('timestamp', '')} {level.upper():<7} [{log.get('agentType', '?')}]"
    line = f"{head} {log.get('message', '')}"
    if log.get("metadata"):
        line += " " + orjson.dumps(log["metadata"]).decode()
    if colour and level in _COLOURS:
        return f"{_COLOURS[level]}{line}{_RESET}"
    return line


async def tail(
    url: str,
    room: str,
    token: str | None,
    *,
    history: int = 0,
    out: TextIO = sys.stdout,
    colour: bool | None = None,
    max_logs: int | None = None,
) -> int:
    """Follow until interrupted (or `max_logs` logs); reconnects with Last-Event-ID."""
    colour = out.isatty() if colour is None else colour
    last_id: str | None = None
    delay = 1.0
    seen = 0
    stream_url = f"{url.rstrip('/')}/api/v1/rooms/{room}/logs"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(sock_read=None)) as http:
        while True:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            params = {"history": str(history)} if history and last_id is None else {}
            if last_id:
                headers["Last-Event-ID"] = last_id
            try:
                async with http.get(stream_url, headers=headers, params=params) as resp:
                    if resp.status != 200:
                        body = await resp.text()
                        hint = (
                            "\n  give a token with --token or ROOMLOGS_TOKEN"
                            if resp.status == 401
                            else ""
                        )
                        print(f"roomlogs tail: {resp.status} {body}{hint}", file=sys.stderr)
                        return 1
                    async for ev in iter_events(resp.content):
                        if ev.event == EventName.LOG:
                            print(format_log(ev.json(), colour), file=out, flush=True)
                            last_id = ev.id or last_id
                            seen += 1
                            if max_logs is not None and seen >= max_logs:
                                return 0
                        elif ev.event == EventName.GAP:
                            print(f"-- gap: some logs are no longer held ({ev.data})", file=out)
                        elif ev.event == EventName.UNAVAILABLE:
                            delay = ev.json().get("retryMs", 3000) / 1000
            except aiohttp.ClientError as exc:
                print(f"-- disconnected ({exc}); reconnecting", file=sys.stderr)
            await asyncio.sleep(delay)
            delay = 1.0
