"""`roomlogs tail ROOM [ROOM…]`: follow rooms in a terminal, coloured by level, resuming by id.

One room uses the one-room route; several share one stream (`GET /api/v1/logs?rooms=`), each
line naming its room, and resume from the stream's cursor. A dropped or refused stream is
retried with a growing delay, and an outage is told once when it starts and once when it ends,
not once per attempt. 400/401/403/404 are final: the command says why and exits 1.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Sequence
from typing import Any, Final, TextIO

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
FINAL_STATUSES: Final = frozenset({400, 401, 403, 404})
BACKOFF_MAX: Final = 15.0


def format_log(log: dict[str, Any], colour: bool, room: str | None = None) -> str:
    level = str(log.get("level", "?"))
    where = f" {room}" if room is not None else ""
    head = f"{log.get('timestamp', '')}{where} {level.upper():<7} [{log.get('agentType', '?')}]"
    line = f"{head} {log.get('message', '')}"
    if log.get("metadata"):
        line += " " + orjson.dumps(log["metadata"]).decode()
    if colour and level in _COLOURS:
        return f"{_COLOURS[level]}{line}{_RESET}"
    return line


class Outage:
    """Tells an outage once when it starts and once when the stream is back."""

    def __init__(self, err: TextIO) -> None:
        self.err = err
        self.since: float | None = None
        self.attempts = 0

    def failed(self, reason: str) -> None:
        self.attempts += 1
        if self.since is None:
            self.since = time.monotonic()
            print(f"-- {reason}; reconnecting", file=self.err, flush=True)

    def connected(self) -> None:
        if self.since is None:
            return
        took = time.monotonic() - self.since
        tries = f"{self.attempts} attempt{'s' if self.attempts != 1 else ''}"
        print(f"-- back after {took:.1f} s ({tries})", file=self.err, flush=True)
        self.since = None
        self.attempts = 0


class Refused(Exception):
    """A final answer (400/401/403/404): retrying would get the same."""


def stream_request(
    url: str, rooms: Sequence[str], history: int, level: str | None, agent: str | None
) -> tuple[str, dict[str, str]]:
    base = url.rstrip("/")
    params: dict[str, str] = {}
    if len(rooms) == 1:
        target = f"{base}/api/v1/rooms/{rooms[0]}/logs"
    else:
        target = f"{base}/api/v1/logs"
        params["rooms"] = ",".join(rooms)
    if history:
        params["history"] = str(history)  # with a Last-Event-ID, only for rooms it lacks
    if level:
        params["level"] = level
    if agent:
        params["agentType"] = agent
    return target, params


async def tail(
    url: str,
    rooms: Sequence[str] | str,
    token: str | None,
    *,
    history: int = 0,
    level: str | None = None,
    agent: str | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    colour: bool | None = None,
    max_logs: int | None = None,
    backoff: float = 1.0,
) -> int:
    """Follow until interrupted (or `max_logs` logs); reconnects with Last-Event-ID."""
    rooms = [rooms] if isinstance(rooms, str) else list(rooms)
    colour = out.isatty() if colour is None else colour
    multi = len(rooms) > 1
    target, params = stream_request(url, rooms, history, level, agent)
    outage = Outage(err)
    state = _Tail(max_logs)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(sock_read=None)) as http:
        while True:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            if state.last_id:
                headers["Last-Event-ID"] = state.last_id
            wait: float | None = None
            try:
                async with http.get(target, headers=headers, params=params) as resp:
                    if resp.status != 200:
                        body = (await resp.text())[:500]
                        if resp.status in FINAL_STATUSES:
                            raise Refused(f"{resp.status} {body}")
                        raise aiohttp.ClientResponseError(
                            resp.request_info, (), status=resp.status, message=body.strip()
                        )
                    async for ev in iter_events(resp.content):
                        if ev.event == EventName.CONNECTED:
                            outage.connected()
                            state.delay = 0.0
                        elif ev.event == EventName.LOG:
                            log = ev.json()
                            room = str(log.pop("roomId", "?")) if multi else None
                            print(format_log(log, colour, room), file=out, flush=True)
                            if state.logged(ev.id):
                                return 0
                        elif ev.event == EventName.GAP:
                            print(f"-- gap: some logs are no longer held ({ev.data})", file=out)
                        elif ev.event == EventName.UNAVAILABLE:
                            data = ev.json()
                            wait = data.get("retryMs", 3000) / 1000
                            state.reason = f"the gateway is unavailable ({data.get('reason')})"
                    outage.failed(state.reason or "the stream ended")
            except Refused as exc:
                hint = (
                    "\n  give a token with --token or ROOMLOGS_TOKEN" if "401" in str(exc) else ""
                )
                print(f"roomlogs tail: {exc}{hint}", file=err)
                return 1
            except aiohttp.ClientResponseError as exc:
                outage.failed(f"HTTP {exc.status} {exc.message}".strip())
            except (aiohttp.ClientError, TimeoutError) as exc:
                outage.failed(f"disconnected ({exc or type(exc).__name__})")
            state.reason = ""
            await asyncio.sleep(wait if wait is not None else state.next_delay(backoff))


class _Tail:
    """Where the tail stands: the last id (or cursor), how many logs, the next delay."""

    def __init__(self, max_logs: int | None) -> None:
        self.max_logs = max_logs
        self.last_id: str | None = None
        self.seen = 0
        self.delay = 0.0
        self.reason = ""

    def logged(self, event_id: str | None) -> bool:
        """Count one log; True once `max_logs` are in."""
        self.last_id = event_id or self.last_id
        self.seen += 1
        return self.max_logs is not None and self.seen >= self.max_logs

    def next_delay(self, backoff: float) -> float:
        """Jittered, doubling from `backoff` up to BACKOFF_MAX; reset by `connected`."""
        self.delay = min(BACKOFF_MAX, max(backoff, self.delay * 2))
        return self.delay / 2 + random.random() * self.delay / 2  # noqa: S311  (not a secret)
