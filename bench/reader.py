"""The load generator's reader: one small `asyncio.Protocol` per SSE stream, byte scans only.

No HTTP client library and no SSE parser on the hot path: a stream sends its GET, checks for
`HTTP/1.1 200`, and from then on only scans bytes. Each read is cut after its last blank line
(what follows waits for the next read), the log marker is counted, and on sampled streams the
float after `"sentAt":` is read for the latency. Neither marker can be forged by a log's
contents: `data:` is one line of JSON, where a newline or a quote is always escaped.

The body may be chunked (aiohttp, uvicorn, nginx) or close-delimited (the minimal server); it is
never de-chunked, since every system here writes whole frames per chunk. That assumption is
checked once per case on the warm-up streams (`check_framing`): the same bytes, de-chunked and
read by `service.sse` (the WHATWG parser a browser applies), must hold as many logs as the scan
counted.
"""

from __future__ import annotations

import asyncio
import math
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, cast

from service import sse

from ._common import HOST, POLL, SetupError

SENT_KEY: Final = b'"sentAt":'
HEAD_LIMIT: Final = 16384


@dataclass(frozen=True)
class Framing:
    """What a system's SSE bytes look like to the scanner."""

    log: bytes  # the line that starts (or is in) every log frame, with its line ending
    end: bytes  # a frame's end: a blank line
    connected: bytes  # seen once the stream's subscription is live
    refused: bytes | None = None  # a transient refusal (roomlogs' `event: unavailable`)

    @classmethod
    def lines(cls, sep: bytes, connected: bytes, refused: bytes | None = None) -> Framing:
        return cls(log=b"event: log" + sep, end=sep + sep, connected=connected, refused=refused)


# roomlogs and the minimal server: LF line ends, `event: connected` once registered.
LF_CONNECTED: Final = Framing.lines(b"\n", b"event: connected\n", b"event: unavailable\n")


class Recorder:
    """What every stream reports into: totals, and latency samples while a phase records them."""

    __slots__ = ("latencies", "reads", "recording", "total")

    def __init__(self) -> None:
        self.total = 0  # log frames received, all streams
        self.reads = 0  # data_received calls that carried at least one log
        self.recording = False
        self.latencies = array("d")  # seconds, publish → receive


def scan_sent_at(data: bytes, now: float, append: Callable[[float], None]) -> None:
    """Append `now - sentAt` for every log in `data` (the bench's logs end their metadata
    with `"sentAt":<float>}`)."""
    pos = data.find(SENT_KEY)
    while pos >= 0:
        start = pos + len(SENT_KEY)
        stop = data.find(b"}", start)
        append(now - float(data[start:stop]))
        pos = data.find(SENT_KEY, stop)


class Stream(asyncio.Protocol):
    """One SSE stream: counts log frames, and reads `"sentAt":` from each when sampled."""

    __slots__ = (
        "base",
        "connected",
        "end",
        "end_len",
        "error",
        "framing",
        "head",
        "in_body",
        "last_rx",
        "log_marker",
        "lost",
        "partial",
        "received",
        "recorder",
        "room",
        "sampled",
        "transport",
    )

    def __init__(self, recorder: Recorder, framing: Framing, room: int, sampled: bool) -> None:
        loop = asyncio.get_running_loop()
        self.recorder = recorder
        self.framing = framing
        self.log_marker = framing.log
        self.end = framing.end
        self.end_len = len(framing.end)
        self.room = room  # index into the pool's rooms
        self.sampled = sampled
        self.connected: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.in_body = False
        self.head = bytearray()
        self.partial = b""
        self.received = 0  # log frames on this stream
        self.base = 0  # `received` at the start of the current phase
        self.last_rx = 0.0  # wall time of the last read that carried a log
        self.error: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.error is None:
            self.error = f"closed: {exc!r}" if exc else "closed by the server"
        for fut in (self.connected, self.lost):
            if not fut.done():
                fut.set_result(None)

    def data_received(self, data: bytes) -> None:
        if not self.in_body:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                if len(self.head) > HEAD_LIMIT:
                    self._fail("response head too large")
                return
            status = bytes(self.head[: self.head.find(b"\r\n")])
            if not status.startswith(b"HTTP/1.1 200"):
                self._fail(status.decode("latin-1"))
                return
            data = bytes(self.head[end + 4 :])
            self.head = bytearray()
            self.in_body = True
        if self.partial:
            data = self.partial + data
        cut = data.rfind(self.end) + self.end_len
        if cut < self.end_len:  # no complete frame yet
            self.partial = data
            return
        if cut < len(data):
            self.partial = data[cut:]
            data = data[:cut]
        else:
            self.partial = b""
        count = data.count(self.log_marker)
        if count:
            now = time.time()
            self.received += count
            self.last_rx = now
            rec = self.recorder
            rec.total += count
            rec.reads += 1
            if rec.recording and self.sampled:
                scan_sent_at(data, now, rec.latencies.append)
        if not self.connected.done():
            if self.framing.connected in data:
                self.connected.set_result(None)
            elif self.framing.refused is not None and self.framing.refused in data:
                self._fail("refused: " + data.decode("utf-8", "replace")[-200:])

    def _fail(self, why: str) -> None:
        self.error = why
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


class KeepingStream(Stream):
    """A `Stream` that also keeps every byte it got (head included), for `check_framing`.
    Only the warm-up streams are these: the measured ones pay nothing for the check."""

    __slots__ = ("raw",)

    def __init__(self, recorder: Recorder, framing: Framing, room: int, sampled: bool) -> None:
        super().__init__(recorder, framing, room, sampled)
        self.raw = bytearray()

    def data_received(self, data: bytes) -> None:
        self.raw += data
        super().data_received(data)


def dechunk(body: bytes) -> bytes:
    """The data of an HTTP/1.1 chunked body, up to its last complete chunk."""
    out = bytearray()
    pos = 0
    while True:
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            return bytes(out)
        size = int(body[pos:eol].split(b";", 1)[0], 16)
        start = eol + 2
        if size == 0 or start + size + 2 > len(body):
            return bytes(out)
        out += body[start : start + size]
        pos = start + size + 2


def events_of(raw: bytes) -> list[sse.Event]:
    """The SSE events of a whole response (head and body), read by `service.sse`."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return []
    headers = head.decode("latin-1").lower()
    if "transfer-encoding: chunked" in headers:
        body = dechunk(body)
    return sse.parse(body)


def check_framing(stream: KeepingStream, system: str) -> None:
    """Raise when the byte scan and the WHATWG parser disagree on what `stream` received: as
    many `log` events as the scan counted, each with a `sentAt` the latency scan can read."""
    logs = [e for e in events_of(bytes(stream.raw)) if e.event == "log"]
    problem = None
    if len(logs) != stream.received:
        problem = (
            f"service.sse read {len(logs)} log events, the byte scan counted {stream.received}"
        )
    for event in logs:
        sent = event.json().get("metadata", {}).get("sentAt")
        if not isinstance(sent, float) or math.isnan(sent):
            problem = f"a log without metadata.sentAt: {event.data[:120]!r}"
    if problem is not None:
        raise SetupError(f"{system}'s stream does not read as the bench assumes: {problem}")


class Pool:
    """Streams over `rooms`: `open(per_room)` opens that many on each room, interleaved.

    `groups` (indices into `rooms`) makes each stream a stream of several rooms: `open(k)`
    then opens k streams on every group, each asked with `request` of the group's room names
    joined by commas (the caller's `request` builds the multi-room URL), and a stream is owed
    the logs of all its rooms. Without it every room is a group of its own (one-room streams).
    A stream's `room` is the index of its group."""

    def __init__(
        self,
        port: int,
        rooms: Sequence[str],
        request: Callable[[str], bytes],
        framing: Framing,
        recorder: Recorder,
        groups: Sequence[Sequence[int]] | None = None,
    ) -> None:
        self.port = port
        self.rooms = list(rooms)
        self.multi = bool(groups)
        self.groups = [tuple(g) for g in groups] if groups else [(r,) for r in range(len(rooms))]
        self.requests = [request(",".join(self.rooms[r] for r in g)) for g in self.groups]
        self.framing = framing
        self.recorder = recorder
        self.streams: list[Stream] = []

    def __len__(self) -> int:
        return len(self.streams)

    @property
    def per_room(self) -> float:
        """Deliveries per log: the streams on a room, on average (a stream of k rooms counts
        on each of them)."""
        if not self.multi:
            return len(self.streams) / len(self.rooms)
        return sum(len(self.groups[s.room]) for s in self.streams) / len(self.rooms)

    def owed_to_groups(self, owed: Sequence[int]) -> list[int]:
        """What each group is owed, given what each room is owed: the sum over its rooms."""
        if not self.multi:
            return list(owed)
        return [sum(owed[r] for r in g) for g in self.groups]

    async def _open_one(self, room: int, sampled: bool, limit_s: float, keep: bool) -> Stream:
        loop = asyncio.get_running_loop()
        rec, framing = self.recorder, self.framing
        kind = KeepingStream if keep else Stream
        async with asyncio.timeout(limit_s):
            transport, proto = await loop.create_connection(
                lambda: kind(rec, framing, room, sampled), HOST, self.port
            )
            transport.write(self.requests[room])
            await proto.connected
        if proto.error is not None:
            raise ConnectionError(proto.error)
        return proto

    async def open(
        self,
        per_room: int,
        *,
        concurrency: int,
        sampled: int,
        limit_s: float = 15,
        attempts: int = 3,
        keep: bool = False,
    ) -> None:
        """Open `per_room` streams on every room (group), `concurrency` at a time, a few attempts
        each; `sampled` of them (spread evenly) read latency during rate steps. `keep`: the
        streams keep their bytes for `check_framing`."""
        sem = asyncio.Semaphore(concurrency)
        errors: list[str] = []
        count = per_room * len(self.groups)
        every = math.ceil(count / sampled) if sampled > 0 else 0

        async def one(index: int) -> None:
            room = index % len(self.groups)
            sample = every > 0 and index % every == 0
            async with sem:
                for attempt in range(attempts):
                    try:
                        proto = await self._open_one(room, sample, limit_s, keep)
                    except (OSError, TimeoutError) as exc:
                        if attempt == attempts - 1:
                            errors.append(f"{type(exc).__name__}: {exc}")
                        else:
                            await asyncio.sleep(0.2 * (attempt + 1))
                        continue
                    self.streams.append(proto)
                    return

        await asyncio.gather(*(one(i) for i in range(count)))
        if errors:
            raise SetupError(f"{len(errors)} of {count} streams did not open: {errors[0]}")

    def dead(self) -> list[Stream]:
        return [s for s in self.streams if s.lost.done()]

    def rebase(self) -> None:
        for s in self.streams:
            s.base = s.received

    def behind(self, owed: Sequence[int]) -> list[Stream]:
        """The streams with fewer logs since `rebase()` than their room (rooms) is owed."""
        need = self.owed_to_groups(owed)
        return [s for s in self.streams if s.received - s.base < need[s.room]]

    async def wait_all(self, owed: Sequence[int], deadline: float) -> list[Stream]:
        """Wait until every stream has the logs its room (rooms) is owed since `rebase()` (or
        the monotonic deadline passes); returns the streams still behind."""
        need = self.owed_to_groups(owed)
        pending = self.behind(owed)
        while pending and time.monotonic() < deadline:
            await asyncio.sleep(POLL)
            pending = [
                s for s in pending if s.received - s.base < need[s.room] and not s.lost.done()
            ]
        return self.behind(owed)

    async def close(self) -> None:
        for s in self.streams:
            s.close()
        await asyncio.sleep(0.2)
        self.streams.clear()
