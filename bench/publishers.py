"""The feeds that publish the bench's logs, the logs themselves, and the pacing.

A `Feed` sends a batch of (room index, log). Three feeds:

- `ScriptFeed`: the service's own publish path on Redis, its Lua script (`XADD` + `PUBLISH`
  with the stream id + `EXPIRE`, `service.broker.script.PUBLISH_SCRIPT`) on the room's keys
  (`service.broker.keys.PLAIN`), one `EVALSHA` per log; logs due at one tick go in one
  pipeline. The commands are pre-encoded RESP on a raw connection: redis-py's pipeline costs
  ~15 µs a command on the client core, which made the publisher the limit of the many-rooms
  case. roomlogs, the minimal server and the tutorial pattern all read what it `PUBLISH`es.
- `HttpFeed`: `POST /api/v1/rooms/{room}/logs` to roomlogs (`bench.fanout --publish http`),
  so the service also pays for the request, the token check and the Redis call.
- `NchanFeed`: `POST /pub/{room}` to nchan's publisher location (nchan does not read plain
  Redis channels), pipelined on one keep-alive connection.

These are the bench's feeds; `service.publisher.Publisher` is the client library's, unrelated.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol, cast
from urllib.parse import urlsplit

import aiohttp
import hiredis
import orjson

from service.auth import mint_token
from service.broker.envelope import ENVELOPE_SECRET_KEY
from service.broker.keys import PLAIN
from service.broker.script import PUBLISH_SCRIPT
from service.settings import Settings

from ._common import HOST, MIN_TICK, SECRET, SetupError

Batch = list[tuple[int, bytes]]  # (room index, log)
HTTP_BATCH: Final = 100  # logs per POST at most (the service's limit per request)


class Feed(Protocol):
    name: str

    async def send(self, batch: Batch) -> None: ...

    async def close(self) -> None: ...


class LogFactory:
    """Logs in the service's format; `metadata.sentAt` (time.time()) is set as each is made.
    Every log is `agentType` `bench`, `level` `info`, about `payload_bytes` of JSON."""

    def __init__(self, payload_bytes: int) -> None:
        self.seq = 0
        probe = self._make(0, "")
        self.message = "x" * max(0, payload_bytes - len(probe))

    @staticmethod
    def _make(seq: int, message: str) -> bytes:
        now = time.time()
        stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
        return orjson.dumps(
            {
                "timestamp": stamp.replace("+00:00", "Z"),
                "agentType": "bench",
                "level": "info",
                "message": message,
                # sentAt last, so `"sentAt":<float>}` is how every log ends its metadata.
                "metadata": {"seq": seq, "sentAt": now},
            }
        )

    def batch(self, count: int) -> list[bytes]:
        out = [self._make(self.seq + i, self.message) for i in range(count)]
        self.seq += count
        return out


# -- Redis: the publish script as raw RESP ------------------------------------------------------


def bulk(*parts: bytes) -> bytes:
    """RESP bulk strings."""
    return b"".join(b"$%d\r\n%b\r\n" % (len(p), p) for p in parts)


def resp(*parts: bytes) -> bytes:
    """One command in RESP."""
    return b"*%d\r\n" % len(parts) + bulk(*parts)


class _Replies(asyncio.Protocol):
    """Collects RESP replies (parsed with hiredis) on one pipelined Redis connection."""

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
        self._check()

    def connection_lost(self, exc: Exception | None) -> None:
        self.error = f"redis publisher connection closed: {exc!r}"
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _check(self) -> None:
        if self.waiter is not None and not self.waiter.done() and len(self.replies) >= self.want:
            self.waiter.set_result(None)

    async def call(self, commands: bytes, count: int, limit_s: float = 30) -> list[object]:
        """Send `count` pre-encoded commands at once; their replies, in order."""
        assert self.transport is not None
        self.replies = []
        self.want = count
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(commands)
        self._check()
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


class ScriptFeed:
    """The service's publish script, one `EVALSHA` per log, a tick's logs in one pipeline."""

    name = "redis script"

    def __init__(self, redis_url: str, rooms: Sequence[str]) -> None:
        url = urlsplit(redis_url)
        self.host = url.hostname or HOST
        self.port = url.port or 6379
        defaults = Settings()
        self.rooms = list(rooms)
        self.limits = (b"%d" % defaults.history_max, b"%d" % defaults.history_ttl)
        self.heads: list[bytes] = []
        self.conn: _Replies | None = None

    async def _connect(self) -> _Replies:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Replies, self.host, self.port)
        (sha,) = await conn.call(resp(b"SCRIPT", b"LOAD", PUBLISH_SCRIPT.encode()), 1)
        assert isinstance(sha, bytes)
        # The gateways' envelope secret, as `service.broker.envelope.read_secret` gets it.
        key = ENVELOPE_SECRET_KEY.encode()
        _, secret = await conn.call(
            resp(b"SET", key, secrets.token_hex(16).encode(), b"NX") + resp(b"GET", key), 2
        )
        assert isinstance(secret, bytes)
        # EVALSHA sha 2 history_key channel history_max history_ttl secret <log>: all but the
        # log.
        self.heads = [
            b"*9\r\n"
            + bulk(b"EVALSHA", sha, b"2", PLAIN.history(r).encode(), PLAIN.channel(r).encode())
            + bulk(*self.limits, secret)
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


# -- HTTP: roomlogs' publish endpoint, nchan's publisher location -------------------------------


class HttpFeed:
    """`POST /api/v1/rooms/{room}/logs` with a JSON array of the room's due logs (at most
    `HTTP_BATCH` a request), one request after another."""

    name = "http"

    def __init__(self, base_url: str, rooms: Sequence[str]) -> None:
        self.urls = [f"{base_url}/api/v1/rooms/{room}/logs" for room in rooms]
        token = mint_token(SECRET, rooms=["*"], publish=["*"], ttl=6 * 3600, sub="bench")
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.http: aiohttp.ClientSession | None = None

    async def send(self, batch: Batch) -> None:
        if self.http is None:
            self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        by_room: dict[int, list[bytes]] = {}
        for room, log in batch:
            by_room.setdefault(room, []).append(log)
        for room, logs in by_room.items():
            for i in range(0, len(logs), HTTP_BATCH):
                body = b"[" + b",".join(logs[i : i + HTTP_BATCH]) + b"]"
                async with self.http.post(self.urls[room], data=body, headers=self.headers) as r:
                    if r.status != 202:
                        raise SetupError(f"POST answered {r.status}: {(await r.text())[:200]}")

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()


def scan_statuses(data: bytes) -> tuple[int, list[bytes], bytes]:
    """The answers whose status lines `data` holds: how many were 2xx, the other statuses,
    and the tail to prepend to the next read (a status line may be cut between two reads).
    Only for answers whose bodies never hold `HTTP/1.1 ` (short JSON or plain text)."""
    ok = 0
    bad: list[bytes] = []
    pos = data.find(b"HTTP/1.1 ")
    last = 0
    while pos >= 0 and pos + 12 <= len(data):
        status = data[pos + 9 : pos + 12]
        if status.startswith(b"20"):
            ok += 1
        else:
            bad.append(status)
        last = pos + 12
        pos = data.find(b"HTTP/1.1 ", last)
    return ok, bad, data[max(last, len(data) - 11) :]


class _Answers(asyncio.Protocol):
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
        ok, bad, self.tail = scan_statuses(self.tail + data)
        self.ok += ok
        self.bad += bad
        self.check()

    def connection_lost(self, exc: Exception | None) -> None:
        self.error = f"publisher connection closed: {exc!r}"
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def check(self) -> None:
        answered = self.ok + len(self.bad)
        if self.waiter is not None and not self.waiter.done() and answered >= self.want:
            self.waiter.set_result(None)


class NchanFeed:
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
        self.conn: _Answers | None = None

    async def send(self, batch: Batch) -> None:
        conn = self.conn
        if conn is None or conn.transport is None or conn.transport.is_closing():
            loop = asyncio.get_running_loop()
            _, conn = await loop.create_connection(_Answers, HOST, self.port)
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


# -- pacing ---------------------------------------------------------------------------------------


@dataclass
class PublishRun:
    sent: int
    per_room: list[int]  # logs sent to each room
    first_wall: float  # time.time() of the first send
    last_wall: float  # ...and of the last


async def publish_at(
    feed: Feed, logs: LogFactory, rooms: int, rate: float, count: int, time_limit: float
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
            batch: Batch = []
            for i, log in enumerate(logs.batch(due - sent)):
                room = (sent + i) % rooms
                per_room[room] += 1
                batch.append((room, log))
            last = time.time()
            if sent == 0:
                first = last
            await feed.send(batch)
            sent = due
        next_due = min(t0 + sent / rate, t0 + time_limit + MIN_TICK)
        await asyncio.sleep(max(next_due - loop.time(), MIN_TICK))
    return PublishRun(sent, per_room, first, last)


def owed(sent: int, rooms: int) -> list[int]:
    """What `publish_at`'s round-robin sends each room out of `sent` logs."""
    return [sent // rooms + (1 if r < sent % rooms else 0) for r in range(rooms)]
