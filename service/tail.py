"""`roomlogs tail ROOM...`: follow rooms in a terminal, coloured by level, resuming by id."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
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
# Answers that retrying would get again: the command says why and exits 1. Anything else (a
# proxy's 502 or 503 while the gateway restarts) is an outage like a dropped connection.
FINAL_STATUSES = frozenset({400, 401, 403, 404})


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
    rooms: str | Sequence[str],
    token: str | None,
    *,
    history: int = 0,
    level: str | None = None,
    agent: str | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    colour: bool | None = None,
    max_logs: int | None = None,
) -> int:
    """Follow until interrupted (or `max_logs` logs), resuming by id (one room) or by the
    cursor (several, on one stream). An outage is one line when it starts and one when it
    ends, however many attempts it took."""
    rooms = [rooms] if isinstance(rooms, str) else list(rooms)
    colour = out.isatty() if colour is None else colour
    several = len(rooms) > 1
    base = url.rstrip("/")
    stream_url = f"{base}/api/v1/logs" if several else f"{base}/api/v1/rooms/{rooms[0]}/logs"
    filters = {k: v for k, v in (("level", level), ("agentType", agent)) if v}
    if several:
        filters["rooms"] = ",".join(rooms)
    last_id: str | None = None
    down_since: float | None = None  # the outage under way, if any
    delay = 1.0
    seen = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(sock_read=None)) as http:
        while True:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            params = dict(filters)
            if history and last_id is None:
                params["history"] = str(history)
            if last_id:
                headers["Last-Event-ID"] = last_id
            why = "the stream ended"
            try:
                async with http.get(stream_url, headers=headers, params=params) as resp:
                    if resp.status in FINAL_STATUSES:
                        body = await resp.text()
                        hint = (
                            "\n  give a token with --token or ROOMLOGS_TOKEN"
                            if resp.status == 401
                            else ""
                        )
                        print(f"roomlogs tail: {resp.status} {body}{hint}", file=err)
                        return 1
                    if resp.status != 200:  # a proxy's 502 while the gateway restarts: retry
                        why = f"HTTP {resp.status}"
                    else:
                        async for ev in iter_events(resp.content):
                            if ev.event == EventName.CONNECTED:
                                if down_since is not None:
                                    gone = time.monotonic() - down_since
                                    print(
                                        f"-- reconnected after {gone:.1f} s", file=err, flush=True
                                    )
                                    down_since = None
                            elif ev.event == EventName.LOG:
                                log = ev.json()
                                line = format_log(log, colour)
                                if several:
                                    line = f"{log.get('roomId', '?')} {line}"
                                print(line, file=out, flush=True)
                                last_id = ev.id or last_id
                                seen += 1
                                if max_logs is not None and seen >= max_logs:
                                    return 0
                            elif ev.event == EventName.GAP:
                                print(f"-- gap: some logs are no longer held ({ev.data})", file=out)
                            elif ev.event == EventName.UNAVAILABLE:
                                data = ev.json()
                                delay = data.get("retryMs", 3000) / 1000
                                why = f"unavailable: {data.get('reason', '?')}"
            except aiohttp.ClientError as exc:
                why = str(exc) or type(exc).__name__
            if down_since is None:
                down_since = time.monotonic()
                print(f"-- disconnected ({why}); reconnecting", file=err, flush=True)
            await asyncio.sleep(delay)
            delay = 1.0
