"""The bench's own Redis: a private redis-server (never the machine's), a plain subscriber in
the load generator for the latency floor, and the two admin calls a case makes."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from array import array
from collections.abc import Sequence
from typing import cast

import redis.asyncio as aioredis

from ._common import HOST, SetupError
from ._procs import free_port, pinned, stop_process
from .publishers import resp
from .reader import Recorder, scan_sent_at


class PrivateRedis:
    """A redis-server of our own on a free port, pinned to `cpu`."""

    def __init__(self, cpu: int | None, extra: Sequence[str] = ()) -> None:
        self.port = free_port()
        self.cpu = cpu
        self.extra = list(extra)  # more redis-server options, e.g. --maxclients
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SetupError("redis-server is missing: apt-get install redis-server")
        argv = [
            binary,
            "--port", str(self.port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--loglevel", "warning",
            *self.extra,
        ]  # fmt: skip
        cpus = None if self.cpu is None else str(self.cpu)
        self.proc = subprocess.Popen(
            pinned(cpus, argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SetupError(f"redis-server exited with {self.proc.returncode}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((HOST, self.port), timeout=0.5) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.02)
        raise SetupError("redis-server did not answer PING within 10 s")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 10)
        self.proc = None


class RedisTap(asyncio.Protocol):
    """A plain Redis SUBSCRIBE on one channel, in the load generator: the latency floor
    (publish → Redis → a subscriber) without the system under test, to compare with."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.latencies = array("d")
        self.partial = b""
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError(f"redis closed: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if self.partial:
            data = self.partial + data
        cut = data.rfind(b"\r\n") + 2  # a payload is one line: only whole lines are read
        self.partial = data[cut:] if cut > 1 else data
        data = data[:cut] if cut > 1 else b""
        if not self.subscribed.done() and b"subscribe" in data:
            self.subscribed.set_result(None)
        if self.recorder.recording:
            scan_sent_at(data, now, self.latencies.append)

    @classmethod
    async def open(cls, port: int, channel: str, recorder: Recorder) -> RedisTap:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(5):
            _, tap = await loop.create_connection(lambda: cls(recorder), HOST, port)
            name = channel.encode()
            assert tap.transport is not None
            tap.transport.write(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(name), name))
            await tap.subscribed
        return tap

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def pubsub_clients(redis_url: str) -> int | None:
    """How many pub/sub connections Redis has (`CLIENT LIST TYPE pubsub`)."""
    client = aioredis.Redis.from_url(redis_url, protocol=2)
    try:
        raw = await client.execute_command(  # type: ignore[no-untyped-call]
            "CLIENT", "LIST", "TYPE", "pubsub"
        )
    except (OSError, aioredis.RedisError):
        return None
    finally:
        await client.aclose()
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return len([line for line in text.splitlines() if line.strip()])


async def flush_redis(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, protocol=2)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


async def info_raw(port: int, *sections: str, host: str = HOST) -> tuple[dict[str, str], int]:
    """`INFO sections…` on a connection of its own: the fields, and the bytes of the reply
    (Redis counts a reply in `total_net_output_bytes` once written, so a meter that reads
    that counter twice subtracts the first reply's bytes from the difference)."""
    async with asyncio.timeout(5):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(resp(b"INFO", *(s.encode() for s in sections)))
            head = await reader.readuntil(b"\r\n")
            if not head.startswith(b"$"):
                raise SetupError(f"INFO answered {head[:200]!r}")
            body = await reader.readexactly(int(head[1:-2]) + 2)
        finally:
            writer.close()
    pairs = (line.split(":", 1) for line in body.decode().splitlines() if ":" in line)
    return {k: v for k, v in pairs}, len(head) + len(body)
