"""Server-Sent Events on the wire: encoding one event, and the one Python parser.

The parser follows the WHATWG rules a browser's EventSource applies
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
CR, LF and CRLF line ends (also split across reads), a leading BOM, one optional space after
the colon, comments, `id` without NUL, and an event dispatched only when it has data. `roomlogs
tail`, the tests and the bench all read streams with it, so what they accept is what a browser
accepts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import orjson

_BOM: Final = "\ufeff"


def encode(event: str, data: bytes, *, id: str | None = None, retry: int | None = None) -> bytes:
    """One event; `data` must be a single line (the callers' JSON always is)."""
    head = b"retry: %d\n" % retry if retry is not None else b""
    if id is not None:
        head += b"id: " + id.encode("ascii") + b"\n"
    return head + b"event: " + event.encode("ascii") + b"\ndata: " + data + b"\n\n"


@dataclass(slots=True)
class Event:
    """One dispatched event. `id` is this event's own `id:` field (None without one);
    `last_event_id` is what EventSource's `lastEventId` holds when it is dispatched."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None
    last_event_id: str = ""
    data_lines: int = 0

    def json(self) -> Any:
        return orjson.loads(self.data)


class Parser:
    """Feed it bytes as they arrive; it returns the events completed by them.

    Line ends are looked for in each new chunk only: a long line arriving in many small reads
    costs its length, once.
    """

    __slots__ = (
        "_data",
        "_errors",
        "_event",
        "_id",
        "_last_id",
        "_lf",
        "_partial",
        "_retry",
        "_start",
    )

    def __init__(self, *, errors: str = "replace") -> None:
        # `errors="strict"` makes invalid UTF-8 raise (the tests' check that a frame is valid).
        self._errors = errors
        self._partial: list[bytes] = []  # the pieces of a line whose end has not arrived
        self._start = True  # a BOM is dropped at the very start only
        self._lf = False  # the last read ended in CR: a LF starting the next one ends no line
        self._last_id = ""
        self._reset()

    def _reset(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        if not chunk:
            return []
        if self._lf and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._lf = False
        events: list[Event] = []
        pos, size = 0, len(chunk)
        cr, lf = chunk.find(b"\r"), chunk.find(b"\n")
        while cr >= 0 or lf >= 0:
            end = cr if lf < 0 or 0 <= cr < lf else lf
            line = chunk[pos:end]
            if self._partial:
                line = b"".join([*self._partial, line])
                self._partial.clear()
            event = self._line(line)
            if event is not None:
                events.append(event)
            pos = end + 1
            if end == cr:
                if pos < size and chunk[pos] == 0x0A:  # CRLF
                    pos += 1
                elif pos == size:
                    self._lf = True
            if cr < pos:
                cr = chunk.find(b"\r", pos)
            if lf < pos:
                lf = chunk.find(b"\n", pos)
        if pos < size:
            self._partial.append(chunk[pos:])
        return events

    def _line(self, raw: bytes) -> Event | None:
        line = raw.decode("utf-8", self._errors)
        if self._start:
            line = line.removeprefix(_BOM)
            self._start = False
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon:
            value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\x00" not in value:
            self._id = self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> Event | None:
        event = None
        if self._data:
            event = Event(
                event=self._event or "message",
                data="\n".join(self._data),
                id=self._id,
                retry=self._retry,
                last_event_id=self._last_id,
                data_lines=len(self._data),
            )
        self._reset()
        return event


def parse(stream: bytes, *, errors: str = "replace") -> list[Event]:
    """The events of a whole stream; an unfinished event at its end is dropped."""
    return Parser(errors=errors).feed(stream)


async def iter_events(content: aiohttp.StreamReader) -> AsyncIterator[Event]:
    """The events of an aiohttp response body, as they arrive, until it ends."""
    parser = Parser()
    async for chunk in content.iter_any():
        for event in parser.feed(chunk):
            yield event
