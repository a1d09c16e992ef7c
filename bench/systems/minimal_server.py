"""The reference limit: a minimal uvloop SSE fan-out server, with no framework at all.

    python -m bench.systems.minimal_server --port 8099 --redis-url redis://127.0.0.1:6379/0

What it does, and nothing more:

- one Redis connection, `PSUBSCRIBE room:*:logs`, read with hiredis' RESP parser;
- each Redis message is turned into its SSE frame once (`id:` from the publish script's
  envelope, `event: log`, `data:` the payload), and the frames of one socket read that go to
  one room are joined, so a burst is one write per stream (coalesced under load, immediate
  when idle);
- `GET /api/v1/rooms/{room}/logs` answers `200 text/event-stream`, close-delimited (no
  chunking, `Connection: close`), then `event: connected`; the transport goes in the room's
  set and every frame is written straight to it from the Redis reader's callback;
- a stream whose socket buffer passes `--max-buffer` bytes is aborted (a slow consumer), so
  memory stays bounded.
- `GET /healthz` answers a fixed keep-alive `200` (pipelined requests answered in order):
  the floor of one HTTP request in Python for `bench.publish`.

No tokens, no history, no metrics, no heartbeats, no validation: it is what the machine allows
Python to do, for comparison with roomlogs (which keeps its whole contract). The same load
generator and the same publish path (the service's Lua script on Redis) drive both.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from typing import Final, cast
from urllib.parse import urlsplit

import hiredis

from service.broker.keys import PLAIN

PATTERN: Final = PLAIN.pattern.encode()
PREFIX: Final = b"/api/v1/rooms/"
SUFFIX: Final = b"/logs"
ENVELOPE: Final = b'{"id":"'
_TAG_MEMBER: Final = len(b'","rlmac":"') + 20 + len(b'",')
RESPONSE_HEAD: Final = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\n"
    b"X-Accel-Buffering: no\r\n"
    b"Connection: close\r\n"
    b"\r\n"
    b'event: connected\ndata: {"ok":true}\n\n'
)
NOT_FOUND: Final = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
HEALTHZ: Final = b"GET /healthz "
HEALTHY: Final = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n"
    b'{"status":"ok"}'
)

Rooms = dict[bytes, set[asyncio.Transport]]


def frame(payload: bytes) -> bytes:
    """The SSE frame of one published log; the publish script's `{"id":"…","rlmac":"…",`
    envelope becomes the `id:` line, as roomlogs does, so both write the same bytes.

    This is `service.broker.script.split_envelope` + `service.events.log_frame` without their
    checks, kept inline on purpose: `split_envelope` also parses the id into a key, decodes and
    re-encodes it and copies the log once more, about 2.5 times this parse (`python -m
    bench.micro --only envelope` has the figures). In the many-rooms case, one message per two
    deliveries, that is more than the run-to-run noise of the reference limit.
    tests/bench/test_minimal_server.py pins both to the same bytes.
    """
    if payload.startswith(ENVELOPE):
        end = payload.find(b'","rlmac":"', 7, 60)
        if end > 0:  # the tag is skipped, not checked: `"," rlmac ":"` + 20 digits + `",`
            start = end + _TAG_MEMBER
            return b"id: %b\nevent: log\ndata: {%b\n\n" % (payload[7:end], payload[start:])
    return b"event: log\ndata: %b\n\n" % payload


class StreamProtocol(asyncio.Protocol):
    """One HTTP connection: read the request head, then it is only written to."""

    __slots__ = ("head", "room", "rooms", "transport")

    def __init__(self, rooms: Rooms) -> None:
        self.rooms = rooms
        self.head = b""
        self.room: bytes | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.room is not None or self.transport is None:
            return  # the client has nothing more to say
        self.head += data
        healthy = 0
        while self.head.startswith(HEALTHZ) and (end := self.head.find(b"\r\n\r\n")) > 0:
            self.head = self.head[end + 4 :]  # a keep-alive probe: answered, read on
            healthy += 1
        if healthy:
            self.transport.write(HEALTHY * healthy)
        if b"\r\n\r\n" not in self.head:
            if len(self.head) > 16384:
                self.transport.abort()
            return
        line = self.head.split(b"\r\n", 1)[0]
        parts = line.split(b" ")
        path = parts[1].split(b"?", 1)[0] if len(parts) == 3 else b""
        room = path[len(PREFIX) : -len(SUFFIX)]
        if (
            parts[0] != b"GET"
            or not path.startswith(PREFIX)
            or not path.endswith(SUFFIX)
            or not room
            or b"/" in room
        ):
            self.transport.write(NOT_FOUND)
            self.transport.close()
            return
        self.head = b""
        self.room = room
        self.rooms.setdefault(room, set()).add(self.transport)
        self.transport.write(RESPONSE_HEAD)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.room is not None and self.transport is not None:
            subs = self.rooms.get(self.room)
            if subs is not None:
                subs.discard(self.transport)
                if not subs:
                    del self.rooms[self.room]


class RedisFanout(asyncio.Protocol):
    """The single Redis subscription; fans each read's messages out to the room's streams."""

    def __init__(self, rooms: Rooms, max_buffer: int) -> None:
        self.rooms = rooms
        self.max_buffer = max_buffer
        self.reader = hiredis.Reader()
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(b"*2\r\n$10\r\nPSUBSCRIBE\r\n$%d\r\n%b\r\n" % (len(PATTERN), PATTERN))

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        batch: dict[bytes, list[bytes]] = {}
        while True:
            msg = reader.gets()
            if msg is False:
                break
            if msg[0] == b"pmessage":
                # PLAIN.channel(id) is room:{id}:logs -> id, sliced here (once per message)
                # rather than through keys.room_from_channel's checks.
                room = msg[2][5:-5]
                frames = batch.get(room)
                if frames is None:
                    batch[room] = [frame(msg[3])]
                else:
                    frames.append(frame(msg[3]))
            elif msg[0] == b"psubscribe" and not self.subscribed.done():
                self.subscribed.set_result(None)
        rooms = self.rooms
        limit = self.max_buffer
        for room, frames in batch.items():
            subs = rooms.get(room)
            if not subs:
                continue
            out = frames[0] if len(frames) == 1 else b"".join(frames)
            slow: list[asyncio.Transport] | None = None
            for transport in subs:
                transport.write(out)
                if transport.get_write_buffer_size() > limit:
                    slow = slow or []
                    slow.append(transport)
            if slow:
                for transport in slow:
                    transport.abort()  # connection_lost takes it out of the room

    def connection_lost(self, exc: Exception | None) -> None:
        for fut in (self.subscribed, self.lost):
            if not fut.done():
                fut.set_result(None)


def _finish(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def serve(host: str, port: int, redis_url: str, max_buffer: int) -> None:
    loop = asyncio.get_running_loop()
    rooms: Rooms = {}
    url = urlsplit(redis_url)
    _, redis = await loop.create_connection(
        lambda: RedisFanout(rooms, max_buffer), url.hostname or "127.0.0.1", url.port or 6379
    )
    async with asyncio.timeout(10):
        await redis.subscribed
    server = await loop.create_server(
        lambda: StreamProtocol(rooms), host, port, backlog=4096, reuse_address=True
    )
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _finish, stop)
    print(f"minimal fan-out server on http://{host}:{port}", flush=True)
    await asyncio.wait([stop, redis.lost], return_when=asyncio.FIRST_COMPLETED)
    server.close()
    for subs in list(rooms.values()):
        for transport in list(subs):
            transport.abort()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(2):
            await server.wait_closed()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.systems.minimal_server", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--redis-url", required=True)
    p.add_argument("--max-buffer", type=int, default=64 * 1024 * 1024, help="bytes per stream")
    args = p.parse_args(argv)
    import uvloop

    uvloop.run(serve(args.host, args.port, args.redis_url, args.max_buffer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
