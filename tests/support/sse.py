"""Reading streams as a browser does, on the package's one parser (`service.sse`, the WHATWG
rules): a whole stream at once (`parse_sse`), one response read across calls (`SSEStream`), and
an EventSource that reconnects with Last-Event-ID (`Follower`)."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from service.sse import Event, Parser, parse


def parse_sse(stream: bytes) -> list[Event]:
    """Events as a browser dispatches them; strict UTF-8: a frame must be valid UTF-8."""
    return parse(stream, errors="strict")


class SSEStream:
    """The events of one aiohttp response, read across calls (`next`, `collect`, `events`).

    It keeps one `service.sse.Parser` (strict UTF-8, as `parse_sse`) and the events it parsed but
    nobody read yet: a chunk often completes several events, and the ones after the event a
    call returned belong to the next call. `service.sse.iter_events` is the same parser for one
    reader that reads to the end; here a bounded `next` may also be cancelled by its timeout,
    which loses nothing (the body stays in aiohttp's buffer, parsed events stay here).
    """

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp
        self._parser = Parser(errors="strict")
        self._unread: collections.deque[Event] = collections.deque()

    async def events(self) -> AsyncIterator[Event]:
        """Every event from here on, until the body ends."""
        while True:
            while self._unread:
                yield self._unread.popleft()
            chunk = await self.resp.content.readany()
            if not chunk:
                return  # an unfinished event at the end is dropped, as a browser drops it
            self._unread.extend(self._parser.feed(chunk))

    async def next(self, *, skip: tuple[str, ...] = ("heartbeat",), timeout: float = 10) -> Event:
        async with asyncio.timeout(timeout):
            async for ev in self.events():
                if ev.event not in skip:
                    return ev
        raise EOFError("stream ended")

    async def collect(self, count: int, *, event: str = "log", timeout: float = 20) -> list[Event]:
        got: list[Event] = []
        async with asyncio.timeout(timeout):
            async for ev in self.events():
                if ev.event == event:
                    got.append(ev)
                    if len(got) == count:
                        return got
        raise EOFError(f"stream ended after {len(got)} of {count} {event} events")


class Follower:
    """What a browser's EventSource does: read, and on any end reconnect with Last-Event-ID."""

    def __init__(
        self, http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
    ) -> None:
        self.http = http
        self.url = url
        self.headers = headers or {}
        self.logs: list[Event] = []
        self.gaps: list[Event] = []
        self.connected: list[Event] = []
        self.last_id: str | None = None
        self.connects = 0
        self.ready = asyncio.Event()  # set at the first `connected` event

    async def run(
        self,
        total: int,
        *,
        drop_after: Any = None,
        pause: Any = None,
        timeout: float = 60,
    ) -> list[Event]:
        """Until `total` logs arrived. `drop_after()` → read that many logs, then hang up;
        `pause()` → an awaitable run before each read, to play a slow reader."""
        async with asyncio.timeout(timeout):
            while len(self.logs) < total:
                headers = dict(self.headers)
                if self.last_id is not None:
                    headers["Last-Event-ID"] = self.last_id
                limit = drop_after() if drop_after is not None else None
                try:
                    async with self.http.get(self.url, headers=headers) as resp:
                        assert resp.status == 200, await resp.text()
                        self.connects += 1
                        read = 0
                        async for ev in SSEStream(resp).events():
                            if ev.event == "log":
                                self.logs.append(ev)
                                self.last_id = ev.id or self.last_id
                                read += 1
                                if len(self.logs) >= total:
                                    return self.logs
                                if limit is not None and read >= limit:
                                    break
                                if pause is not None:
                                    await pause()
                            elif ev.event == "connected":
                                self.connected.append(ev)
                                self.ready.set()
                            elif ev.event == "gap":
                                self.gaps.append(ev)
                except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
                    pass  # the server hung up on us: reconnect, as EventSource does
        return self.logs

    def messages(self) -> list[str]:
        return [e.json()["message"] for e in self.logs]
