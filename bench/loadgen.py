"""The load generator of `bench.compare`: SSE streams over many rooms, and the publishers.

It is `bench.fanout`'s lean reader (one `asyncio.Protocol` per stream, no HTTP client library,
only byte scans), generalised to:

- any SSE line ending (`\\n` for roomlogs, the minimal server and nchan; `\\r\\n` for
  sse-starlette), and any "subscription is live" marker (`event: connected`, nchan's `: hi`);
- streams on many rooms, each stream knowing its room, so a step knows how many logs each
  stream is owed;
- two publish paths: the service's Lua script on Redis (roomlogs, the minimal server and the
  tutorial pattern all read what it `PUBLISH`es), and nchan's HTTP publisher location (nchan
  does not read plain Redis channels).

The body may be chunked (aiohttp, uvicorn) or close-delimited (the minimal server, nchan); it is
never de-chunked: every server here writes whole frames per chunk, so only complete frames (up
to the last blank line) are scanned, and what follows waits for the next read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, cast
from urllib.parse import urlsplit

import hiredis

from service.broker.keys import PLAIN
from service.broker.script import PUBLISH_SCRIPT
from service.settings import Settings

from .fanout import HOST, MIN_TICK, POLL, LogFactory, Recorder, SetupError

SENT_KEY: Final = b'"sentAt":'


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
        self.room = room
        self.sampled = sampled
        self.connected: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.in_body = False
        self.head = bytearray()
        self.partial = b""
        self.received = 0
        self.base = 0
        self.last_rx = 0.0
        self.error: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
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
                if len(self.head) > 16384:
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
                append = rec.latencies.append
                pos = data.find(SENT_KEY)
                while pos >= 0:
                    start = pos + 9  # len(SENT_KEY)
                    stop = data.find(b"}", start)
                    append(now - float(data[start:stop]))
                    pos = data.find(SENT_KEY, stop)
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


class Pool:
    """Streams over `rooms`: `open(per_room)` opens that many on each room, interleaved."""

    def __init__(
        self,
        port: int,
        rooms: Sequence[str],
        request: Callable[[str], bytes],
        framing: Framing,
        recorder: Recorder,
    ) -> None:
        self.port = port
        self.rooms = list(rooms)
        self.requests = [request(room) for room in self.rooms]
        self.framing = framing
        self.recorder = recorder
        self.streams: list[Stream] = []

    def __len__(self) -> int:
        return len(self.streams)

    async def _open_one(self, room: int, sampled: bool, limit_s: float) -> Stream:
        loop = asyncio.get_running_loop()
        rec, framing = self.recorder, self.framing
        async with asyncio.timeout(limit_s):
            transport, proto = await loop.create_connection(
                lambda: Stream(rec, framing, room, sampled), HOST, self.port
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
    ) -> None:
        """Open `per_room` streams on every room, `concurrency` at a time, a few attempts
        each; `sampled` of them (spread evenly) read latency during rate steps."""
        sem = asyncio.Semaphore(concurrency)
        errors: list[str] = []
        count = per_room * len(self.rooms)
        every = max(1, count // max(1, sampled))

        async def one(index: int) -> None:
            room = index % len(self.rooms)
            async with sem:
                for attempt in range(attempts):
                    try:
                        proto = await self._open_one(room, index % every == 0, limit_s)
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
        return [s for s in self.streams if s.received - s.base < owed[s.room]]

    async def wait_all(self, owed: Sequence[int], deadline: float) -> list[Stream]:
        """Wait until every stream has the logs its room is owed since `rebase()` (or the
        monotonic deadline passes); returns the streams still behind."""
        pending = self.behind(owed)
        while pending and time.monotonic() < deadline:
            await asyncio.sleep(POLL)
            pending = [
                s for s in pending if s.received - s.base < owed[s.room] and not s.lost.done()
            ]
        return self.behind(owed)

    async def close(self) -> None:
        for s in self.streams:
            s.close()
        await asyncio.sleep(0.2)
        self.streams.clear()


# -- publishers ----------------------------------------------------------------------------

Batch = list[tuple[int, bytes]]  # (room index, log)


class Publisher(Protocol):
    name: str

    async def send(self, batch: Batch) -> None: ...

    async def close(self) -> None: ...


class _RespReplies(asyncio.Protocol):
    """Counts RESP replies (parsed with hiredis) on one pipelined Redis connection."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.replies: list[object] = []
        self.want = 0
        self.waiter: asyncio.Future[None] | None = None
        self.transport: asyncio.Transport | None = None
        self.error: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            self.replies.append(reply)
        self.check()

    def connection_lost(self, exc: Exception | None) -> None:
        self.error = f"redis publisher connection closed: {exc!r}"
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def check(self) -> None:
        if self.waiter is not None and not self.waiter.done() and len(self.replies) >= self.want:
            self.waiter.set_result(None)

    async def call(self, commands: bytes, count: int, limit_s: float = 30) -> list[object]:
        """Send `count` pre-encoded commands at once; their replies, in order."""
        assert self.transport is not None
        self.replies = []
        self.want = count
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(commands)
        self.check()
        try:
            async with asyncio.timeout(limit_s):
                await self.waiter
        except TimeoutError:
            raise SetupError(f"redis did not answer within {limit_s:g} s") from None
        if len(self.replies) < count:
            raise SetupError(self.error or "redis publisher: replies missing")
        errors = [r for r in self.replies if isinstance(r, Exception)]
        if errors:
            raise SetupError(f"redis publish failed: {errors[0]!r}")
        return self.replies


def bulk(*parts: bytes) -> bytes:
    """RESP bulk strings."""
    return b"".join(b"$%d\r\n%b\r\n" % (len(p), p) for p in parts)


def resp(*parts: bytes) -> bytes:
    """One command in RESP."""
    return b"*%d\r\n" % len(parts) + bulk(*parts)


class ScriptPublisher:
    """The service's own publish path on Redis: its Lua script (XADD + PUBLISH with the stream
    id + EXPIRE) on the room's keys, one EVALSHA per log; logs due at one tick go in one
    pipeline. The commands are pre-encoded RESP on a raw connection (redis-py's pipeline costs
    ~15 µs a command, which made the publisher the limit of the many-rooms case). The minimal
    server and the tutorial pattern read the same `PUBLISH`."""

    name = "redis script"

    def __init__(self, redis_url: str, rooms: Sequence[str]) -> None:
        url = urlsplit(redis_url)
        self.host = url.hostname or HOST
        self.port = url.port or 6379
        defaults = Settings()
        self.rooms = list(rooms)
        self.limits = (b"%d" % defaults.history_max, b"%d" % defaults.history_ttl)
        self.heads: list[bytes] = []
        self.conn: _RespReplies | None = None

    async def _connect(self) -> _RespReplies:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_RespReplies, self.host, self.port)
        (sha,) = await conn.call(resp(b"SCRIPT", b"LOAD", PUBLISH_SCRIPT.encode()), 1)
        assert isinstance(sha, bytes)
        # EVALSHA sha 2 history_key channel history_max history_ttl <log>: all but the log.
        self.heads = [
            b"*8\r\n"
            + bulk(b"EVALSHA", sha, b"2", PLAIN.history(r).encode(), PLAIN.channel(r).encode())
            + bulk(*self.limits)
            for r in self.rooms
        ]
        return conn

    async def send(self, batch: Batch) -> None:
        conn = self.conn
        if conn is None or conn.transport is None or conn.transport.is_closing():
            conn = self.conn = await self._connect()
        heads = self.heads
        await conn.call(
            b"".join(b"%b$%d\r\n%b\r\n" % (heads[room], len(log), log) for room, log in batch),
            len(batch),
        )

    async def close(self) -> None:
        if self.conn is not None and self.conn.transport is not None:
            self.conn.transport.close()


class _HttpAnswers(asyncio.Protocol):
    """Counts HTTP responses on a keep-alive connection (the status lines; nchan's bodies are
    short plain text that never holds one)."""

    def __init__(self) -> None:
        self.ok = 0
        self.bad: list[bytes] = []
        self.tail = b""
        self.waiter: asyncio.Future[None] | None = None
        self.want = 0
        self.transport: asyncio.Transport | None = None
        self.error: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        data = self.tail + data
        pos = data.find(b"HTTP/1.1 ")
        last = 0
        while pos >= 0 and pos + 12 <= len(data):
            status = data[pos + 9 : pos + 12]
            if status.startswith(b"20"):
                self.ok += 1
            else:
                self.bad.append(status)
            last = pos + 12
            pos = data.find(b"HTTP/1.1 ", last)
        self.tail = data[max(last, len(data) - 11) :]
        self.check()

    def connection_lost(self, exc: Exception | None) -> None:
        self.error = f"publisher connection closed: {exc!r}"
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def check(self) -> None:
        if (
            self.waiter is not None
            and not self.waiter.done()
            and (self.ok + len(self.bad) >= self.want)
        ):
            self.waiter.set_result(None)


class NchanPublisher:
    """`POST /pub/{room}` to nchan's publisher location, pipelined on one keep-alive
    connection, with `X-EventSource-Event: log` so nchan names the event like the others."""

    name = "nchan http"

    def __init__(self, port: int, rooms: Sequence[str]) -> None:
        self.port = port
        self.heads = [
            (
                f"POST /pub/{room} HTTP/1.1\r\nHost: {HOST}\r\n"
                "Content-Type: application/json\r\nX-EventSource-Event: log\r\n"
                "Content-Length: "
            ).encode("ascii")
            for room in rooms
        ]
        self.conn: _HttpAnswers | None = None

    async def send(self, batch: Batch) -> None:
        conn = self.conn
        if conn is None or conn.transport is None or conn.transport.is_closing():
            loop = asyncio.get_running_loop()
            _, conn = await loop.create_connection(_HttpAnswers, HOST, self.port)
            self.conn = conn
        assert conn.transport is not None
        conn.want = conn.ok + len(conn.bad) + len(batch)
        conn.waiter = asyncio.get_running_loop().create_future()
        conn.transport.write(
            b"".join(b"%b%d\r\n\r\n%b" % (self.heads[room], len(log), log) for room, log in batch)
        )
        conn.check()
        try:
            async with asyncio.timeout(30):
                await conn.waiter
        except TimeoutError:
            raise SetupError("nchan publisher did not answer within 30 s") from None
        if conn.ok + len(conn.bad) < conn.want:
            raise SetupError(conn.error or "nchan publisher: answers missing")
        if conn.bad:
            raise SetupError(f"nchan publisher answered {conn.bad[0]!r}")

    async def close(self) -> None:
        if self.conn is not None and self.conn.transport is not None:
            self.conn.transport.close()


@dataclass
class PublishRun:
    sent: int
    per_room: list[int]
    first_wall: float
    last_wall: float


async def publish_at(
    publisher: Publisher,
    logs: LogFactory,
    rooms: int,
    rate: float,
    count: int,
    time_limit: float,
) -> PublishRun:
    """Publish `count` logs at `rate` logs/s, round-robin over `rooms` (several per call only
    when one per MIN_TICK cannot keep up); stops early after `time_limit` seconds."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    sent = 0
    per_room = [0] * rooms
    first = last = 0.0
    while sent < count:
        elapsed = loop.time() - t0
        if elapsed > time_limit:
            break
        due = min(count, int(elapsed * rate) + 1)
        if due > sent:
            made = logs.batch(due - sent)
            batch: Batch = []
            for i, log in enumerate(made):
                room = (sent + i) % rooms
                per_room[room] += 1
                batch.append((room, log))
            last = time.time()
            if sent == 0:
                first = last
            await publisher.send(batch)
            sent = due
        next_due = min(t0 + sent / rate, t0 + time_limit + MIN_TICK)
        await asyncio.sleep(max(next_due - loop.time(), MIN_TICK))
    return PublishRun(sent, per_room, first, last)
