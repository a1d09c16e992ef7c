"""Real parts for the tests: a private redis-server, the service as a process, an SSE reader."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from service.message import Message, message_from_log

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def debian_binary(package: str, *paths: str) -> str:
    """The first of `paths` (names on PATH or absolute paths) that exists; as root, Debian's
    `package` is installed with apt when none does. The tests use real servers and browsers,
    never stand-ins, so a missing one is installed, not skipped."""

    def find() -> str | None:
        for name in paths:
            found = shutil.which(name) or (name if os.access(name, os.X_OK) else None)
            if found:
                return found
        return None

    path = find()
    if path is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
            check=True,
            env=env,
        )
        path = find()
    if path is None:
        raise RuntimeError(f"{paths[0]} is missing: apt-get install {package}")
    return path


def redis_server_binary() -> str:
    return debian_binary("redis-server", "redis-server")


class RedisServer:
    """A redis-server of our own on a free port: never the data of an existing Redis."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                redis_server_binary(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def kill(self) -> None:
        """Stop it by PID, at once (SIGKILL): what an outage looks like to the service."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def cli(self, *args: str) -> str:
        redis_cli = shutil.which("redis-cli") or "redis-cli"
        out = subprocess.run(
            [redis_cli, "-p", str(self.port), *args],
            check=True,
            capture_output=True,
            timeout=10,
        )
        return out.stdout.decode()


@dataclass
class ServiceProcess:
    """`python -m service serve`, started the production way, on a free port."""

    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log_path: Path) -> None:
        self.log_path = log_path
        env = {**os.environ, **self.env, "PORT": str(self.port), "LISTEN_HOST": "127.0.0.1"}
        with open(log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "service", "serve"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def wait_healthy(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"service exited: {self.output()}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(self.url + "/readyz") as r:
                        if r.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise RuntimeError(f"service not ready in {timeout}s: {self.output()}")

    def output(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)


@dataclass
class Event:
    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        return orjson.loads(self.data)


class SSEStream:
    """A minimal EventSource parser over an aiohttp response (the WHATWG rules we rely on)."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp

    async def events(self) -> AsyncIterator[Event]:
        ev = Event()
        data: list[str] = []
        seen = False
        while True:
            raw = await self.resp.content.readline()
            if not raw:
                return
            line = raw.decode("utf-8").rstrip("\r\n")
            if not line:
                if seen:
                    ev.data = "\n".join(data)
                    yield ev
                ev, data, seen = Event(), [], False
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            seen = True
            if name == "event":
                ev.event = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                ev.id = value
            elif name == "retry":
                ev.retry = int(value)

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


def sample_log(i: int, **extra: Any) -> dict[str, Any]:
    """A log in the original NestJS format."""
    return {
        "timestamp": f"2026-01-01T00:00:{i % 60:02d}.000Z",
        "agentType": "story",
        "level": "info",
        "message": f"log {i}",
        "metadata": {"step": i},
        **extra,
    }


MS = 1_700_000_000_000


def message(
    room: str, seq: int | None, *, level: str = "info", agent: str = "story", ms: int = MS
) -> Message:
    """A decoded log of `room` with stream id `<ms>-<seq>` (no id when `seq` is None)."""
    log: dict[str, Any] = {
        "timestamp": "2026-01-01T00:00:00.000Z",
        "agentType": agent,
        "level": level,
        "message": f"log {seq}",
        "metadata": {},
    }
    return message_from_log(room, None if seq is None else f"{ms}-{seq}", log, None, None)


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


async def poll_until(check: Any, timeout: float = 15, interval: float = 0.05) -> None:
    """For state another process holds and announces no event for (/metrics, /readyz):
    ask again until `await check()` is true, within a bounded time."""
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - no event crosses the process boundary
            await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def background(*coros: Any) -> AsyncIterator[list[asyncio.Task[Any]]]:
    """Run clients beside the test body; whatever happens, none outlives the test."""
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class SinkTransport(asyncio.Transport):
    """The receiving end of a handed-off stream, in memory: it keeps what is written to it.

    A real `asyncio.Transport` (not a mock) for driving the hub and a subscriber without a
    socket; `arrived` is set by every write, so a test awaits data instead of sleeping.
    """

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closing = False
        self.arrived = asyncio.Event()
        self._protocol: asyncio.BaseProtocol | None = None

    @property
    def data(self) -> bytes:
        return b"".join(self.writes)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))
        self.arrived.set()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._protocol is not None
        return self._protocol

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def get_write_buffer_size(self) -> int:
        return 0

    async def next_write(self, timeout: float = 5) -> bytes:
        """Wait for the next write and return everything written so far, then forget it."""
        async with asyncio.timeout(timeout):
            await self.arrived.wait()
        self.arrived.clear()
        data = self.data
        self.writes.clear()
        return data
