"""Fan-out benchmark: one room, N SSE streams, one real service process, one private Redis.

    .venv/bin/python -m bench.fanout --streams 100,1000,5000

For each N it starts a fresh `python -m service serve` pinned to one core (the load generator and
the private redis-server share the other), then:

1. warms the service up, reads its RSS, opens N streams on one room, reads the RSS again
   (server memory per idle stream);
2. publishes logs through the service's own Redis publish path (its Lua `XADD` + `PUBLISH`
   script, one call per log) or `POST /api/v1/rooms/{room}/logs`, stepping the rate up until a
   step is no longer sustained (every log on every stream, no growing backlog, p99 within
   `--max-p99-ms`), then bisecting: the highest sustained step gives the max deliveries/s and
   the server CPU µs per delivery (from /proc/PID/stat);
3. publishes at a fixed moderate rate (`--latency-deliveries`, 10,000 deliveries/s) and
   measures publish→receive latency on every stream from the send time each log carries in
   `metadata.sentAt`, and the server CPU per delivery when logs go out one at a time.

It prints a Markdown table and writes bench/results/fanout-<timestamp>.json. It exits non-zero
only on a setup failure (a process that does not start, streams that cannot be opened). See
bench/README.md for what each number means and what it does not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.metadata
import math
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol, cast

import aiohttp
import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from service.auth import mint_token
from service.broker.keys import PLAIN
from service.broker.script import PUBLISH_SCRIPT
from service.settings import Settings

ROOT: Final = Path(__file__).resolve().parent.parent
RESULTS_DIR: Final = ROOT / "bench" / "results"
HOST: Final = "127.0.0.1"
SECRET: Final = "bench-" + secrets.token_urlsafe(24)

# What a stream's bytes are scanned for. `data:` is one line of JSON, so neither marker can be
# forged by a log's contents (a `\n` or `"` inside a JSON string is always escaped).
LOG_MARKER: Final = b"event: log\n"
CONNECTED_MARKER: Final = b"event: connected\n"
UNAVAILABLE_MARKER: Final = b"event: unavailable\n"
SENT_KEY: Final = b'"sentAt":'

MIN_TICK: Final = 0.002  # seconds between publisher wake-ups at the highest rates
POLL: Final = 0.02  # seconds between checks while waiting for deliveries
SATURATED: Final = 0.90  # a core this busy is treated as saturated
OWN_SHARE: Final = 0.75  # ...by our own process when it used at least this much of it
NOISY: Final = 0.15  # other processes using this much of a core make a step noisy
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")


Log = Callable[[str], None]
NA: Final = "n/a"


class SetupError(RuntimeError):
    """The benchmark could not be set up (a process did not start, streams did not open)."""


# -- processes and /proc ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def pinned(cpu: int | None, argv: list[str]) -> list[str]:
    """`argv` run on one core: `taskset -c CPU argv` (so threads started early are pinned too)."""
    if cpu is None:
        return argv
    taskset = shutil.which("taskset")
    if taskset is None:
        raise SetupError("taskset is missing (util-linux); run with --no-pin")
    return [taskset, "-c", str(cpu), *argv]


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/PID/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SetupError(f"no VmRSS for pid {pid}")


def core_times() -> dict[int, tuple[int, int]]:
    """Per core: (busy, total) jiffies from /proc/stat; busy counts irq, softirq and steal."""
    out: dict[int, tuple[int, int]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *values = line.split()
        user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in values[:8])
        busy = user + nice + system + irq + softirq + steal
        out[int(name[3:])] = (busy, busy + idle + iowait)
    return out


def raise_nofile(needed: int) -> int:
    """Raise RLIMIT_NOFILE so `needed` descriptors fit (children inherit it); returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    if hard != resource.RLIM_INFINITY and hard < needed:
        try:  # root may raise the hard limit too
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            return needed
        except (ValueError, OSError):
            raise SetupError(
                f"open file limit is {soft}/{hard}, {needed} needed: raise it (ulimit -n)"
            ) from None
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return needed


def _stop(proc: subprocess.Popen[bytes], timeout: float) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class PrivateRedis:
    """A redis-server of our own on a free port, never the machine's Redis."""

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
        self.proc = subprocess.Popen(
            pinned(self.cpu, argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
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
            _stop(self.proc, 10)
        self.proc = None


class ServiceUnderTest:
    """`python -m service serve` as a real process on a free port, pinned to one core."""

    def __init__(
        self, redis_url: str, cpu: int | None, streams: int, log_path: Path, source: Path
    ) -> None:
        self.port = free_port()
        self.source = source  # the directory that holds the `service` package to run
        self.cpu = cpu
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {
            "REDIS_URL": redis_url,
            "JWT_SECRET": SECRET,
            "JWT_ALGORITHMS": "HS256",
            "LISTEN_HOST": HOST,
            "PORT": str(self.port),
            "HEARTBEAT_INTERVAL": "3600",
            "MAX_CONNECTIONS": str(streams * 2 + 1000),
            "SUBSCRIBER_BUFFER": "100000",
            "ROOM_CHECK": "off",
            "WORKERS": "1",
            "SHUTDOWN_TIMEOUT": "2",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "text",
        }

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "CORS_"))}
        env.update(self.env)
        argv = pinned(self.cpu, [sys.executable, "-m", "service", "serve"])
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                argv, cwd=self.source, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def output_tail(self, chars: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text()[-chars:]
        return ""

    async def wait_ready(self, http: aiohttp.ClientSession, limit_s: float = 20) -> None:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise SetupError(f"service exited: {self.output_tail()}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(self.url + "/readyz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.05)
        raise SetupError(f"service not ready within {limit_s:g} s: {self.output_tail()}")

    async def counters(self, http: aiohttp.ClientSession) -> dict[str, float]:
        """A few counters from /metrics, as a cross-check of what the load generator saw."""
        wanted = (
            "roomlogs_events_sent_total",
            "roomlogs_broker_messages_total",
            "roomlogs_slow_consumer_closes_total",
            "roomlogs_connections",
        )
        out: dict[str, float] = {}
        with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
            async with http.get(self.url + "/metrics") as resp:
                for line in (await resp.text()).splitlines():
                    name, _, value = line.partition(" ")
                    if name in wanted:
                        out[name] = float(value)
        return out

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc, 15)
        self.proc = None


# -- the load generator: one small protocol object per stream -----------------------------


class Recorder:
    """What every stream reports into: totals, and latency samples while a phase records them."""

    __slots__ = ("latencies", "reads", "recording", "total")

    def __init__(self) -> None:
        self.total = 0  # `event: log` frames received, all streams
        self.reads = 0  # data_received calls that carried at least one log
        self.recording = False
        self.latencies = array("d")  # seconds, publish → receive


class SSEStreamProtocol(asyncio.Protocol):
    """One SSE stream, read with as little work as possible.

    The body is HTTP/1.1 chunked, and each chunk holds whole SSE frames (the service writes
    frames whole), so no de-chunking is needed: only complete frames (up to the last blank
    line) are scanned, and what follows is kept for the next read. It counts `event: log`
    frames and, when sampled, reads `"sentAt":` from each log for the latency.
    """

    __slots__ = (
        "base",
        "connected",
        "error",
        "head",
        "in_body",
        "last_rx",
        "lost",
        "partial",
        "received",
        "recorder",
        "sampled",
        "transport",
    )

    def __init__(self, recorder: Recorder, sampled: bool) -> None:
        loop = asyncio.get_running_loop()
        self.recorder = recorder
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
        cut = data.rfind(b"\n\n") + 2
        if cut == 1:  # no complete frame yet
            self.partial = data
            return
        if cut < len(data):
            self.partial = data[cut:]
            data = data[:cut]
        else:
            self.partial = b""
        count = data.count(LOG_MARKER)
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
                    start = pos + len(SENT_KEY)
                    end = data.find(b"}", start)
                    append(now - float(data[start:end]))
                    pos = data.find(SENT_KEY, end)
        if not self.connected.done():
            if CONNECTED_MARKER in data:
                self.connected.set_result(None)
            elif UNAVAILABLE_MARKER in data:
                self._fail("event: unavailable " + data.decode("utf-8", "replace")[-200:])

    def _fail(self, why: str) -> None:
        self.error = why
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


class RedisTap(asyncio.Protocol):
    """A plain Redis SUBSCRIBE on the room's channel, in the load generator: the latency floor
    (publish → Redis → a subscriber) without the service, to compare the streams with."""

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
            pos = data.find(SENT_KEY)
            while pos >= 0:
                start = pos + len(SENT_KEY)
                end = data.find(b"}", start)
                self.latencies.append(now - float(data[start:end]))
                pos = data.find(SENT_KEY, end)

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


class StreamPool:
    """N streams on one room."""

    def __init__(self, port: int, room: str, token: str, recorder: Recorder) -> None:
        self.port = port
        self.recorder = recorder
        self.streams: list[SSEStreamProtocol] = []
        self.request = (
            f"GET /api/v1/rooms/{room}/logs HTTP/1.1\r\n"
            f"Host: {HOST}:{port}\r\n"
            f"Authorization: Bearer {token}\r\n"
            "Accept: text/event-stream\r\n"
            "Cache-Control: no-cache\r\n"
            "\r\n"
        ).encode("ascii")

    def __len__(self) -> int:
        return len(self.streams)

    async def _open_one(self, sampled: bool, limit_s: float) -> SSEStreamProtocol:
        loop = asyncio.get_running_loop()
        recorder = self.recorder
        async with asyncio.timeout(limit_s):
            transport, proto = await loop.create_connection(
                lambda: SSEStreamProtocol(recorder, sampled), HOST, self.port
            )
            transport.write(self.request)
            await proto.connected
        if proto.error is not None:
            raise ConnectionError(proto.error)
        return proto

    async def open(
        self,
        count: int,
        *,
        concurrency: int,
        sample_every: int,
        limit_s: float = 10,
        attempts: int = 3,
    ) -> None:
        """Open `count` more streams, `concurrency` at a time; each gets a few attempts."""
        sem = asyncio.Semaphore(concurrency)
        errors: list[str] = []
        first = len(self.streams)

        async def one(index: int) -> None:
            async with sem:
                for attempt in range(attempts):
                    try:
                        proto = await self._open_one(index % sample_every == 0, limit_s)
                    except (OSError, TimeoutError) as exc:
                        if attempt == attempts - 1:
                            errors.append(f"{type(exc).__name__}: {exc}")
                        else:
                            await asyncio.sleep(0.2 * (attempt + 1))
                        continue
                    self.streams.append(proto)
                    return

        await asyncio.gather(*(one(first + i) for i in range(count)))
        if errors:
            raise SetupError(f"{len(errors)} of {count} streams did not open: {errors[0]}")

    def dead(self) -> list[SSEStreamProtocol]:
        return [s for s in self.streams if s.lost.done()]

    def rebase(self) -> None:
        for s in self.streams:
            s.base = s.received

    def behind(self, expected: int) -> list[SSEStreamProtocol]:
        return [s for s in self.streams if s.received - s.base < expected]

    async def wait_all(self, expected: int, deadline: float) -> list[SSEStreamProtocol]:
        """Wait until every stream has `expected` logs since `rebase()` (or the monotonic
        deadline passes); returns the streams still behind."""
        pending = self.behind(expected)
        while pending and time.monotonic() < deadline:
            await asyncio.sleep(POLL)
            pending = [s for s in pending if s.received - s.base < expected and not s.lost.done()]
        return [s for s in self.streams if s.received - s.base < expected]

    async def close(self) -> None:
        for s in self.streams:
            s.close()
        await asyncio.sleep(0.1)
        self.streams.clear()


# -- publishers ----------------------------------------------------------------------------


class Publisher(Protocol):
    name: str

    async def send(self, logs: list[bytes]) -> None: ...

    async def close(self) -> None: ...


class RedisPublisher:
    """The service's own publish path: its Lua script (XADD + PUBLISH with the stream id +
    EXPIRE) on its keys, one script call per log, as one `POST` of one log would run it.

    Logs due at the same tick go in one pipeline (one round trip, still one call per log).
    """

    name = "redis"

    def __init__(self, redis_url: str, room: str) -> None:
        defaults = Settings()
        self.client = aioredis.Redis.from_url(redis_url, decode_responses=False, protocol=2)
        self.keys = (PLAIN.history(room), PLAIN.channel(room))
        self.limits = (defaults.history_max, defaults.history_ttl)
        self.sha = ""

    async def send(self, logs: list[bytes]) -> None:
        if not self.sha:
            self.sha = await self.client.script_load(PUBLISH_SCRIPT)
        args = (*self.keys, *self.limits)
        try:
            if len(logs) == 1:
                await self.client.evalsha(self.sha, 2, *args, logs[0])
                return
            pipe = self.client.pipeline(transaction=False)
            for log in logs:
                pipe.evalsha(self.sha, 2, *args, log)
            await pipe.execute()
        except RedisError as exc:
            raise SetupError(f"redis publish failed: {exc!r}") from exc

    async def close(self) -> None:
        await self.client.aclose()


class HttpPublisher:
    """`POST /api/v1/rooms/{room}/logs` with a JSON array (at most 100 logs a request)."""

    name = "http"

    def __init__(self, http: aiohttp.ClientSession, base_url: str, room: str) -> None:
        self.http = http
        self.url = f"{base_url}/api/v1/rooms/{room}/logs"
        token = mint_token(SECRET, rooms=[room], publish=[room], ttl=6 * 3600, sub="bench")
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def send(self, logs: list[bytes]) -> None:
        for i in range(0, len(logs), 100):
            body = b"[" + b",".join(logs[i : i + 100]) + b"]"
            async with self.http.post(self.url, data=body, headers=self.headers) as resp:
                if resp.status != 202:
                    raise SetupError(f"POST answered {resp.status}: {(await resp.text())[:200]}")

    async def close(self) -> None:
        return None


class LogFactory:
    """Logs in the service's format; `metadata.sentAt` (time.time()) is set as each is made."""

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


@dataclass
class PublishRun:
    sent: int
    first_wall: float
    last_wall: float


async def publish_at(
    publisher: Publisher, logs: LogFactory, rate: float, count: int, time_limit: float
) -> PublishRun:
    """Publish `count` logs at `rate` logs/s (several per call only when one per
    MIN_TICK cannot keep up); stops early after `time_limit` seconds."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    sent = 0
    first = last = 0.0
    while sent < count:
        elapsed = loop.time() - t0
        if elapsed > time_limit:
            break
        due = min(count, int(elapsed * rate) + 1)
        if due > sent:
            batch = logs.batch(due - sent)
            last = time.time()
            if sent == 0:
                first = last
            await publisher.send(batch)
            sent = due
        next_due = t0 + sent / rate
        await asyncio.sleep(max(next_due - loop.time(), MIN_TICK))
    return PublishRun(sent, first, last)


# -- measurements --------------------------------------------------------------------------


@dataclass
class Usage:
    """CPU used between two snapshots, as a share of one core."""

    wall: float
    server: float
    loadgen: float
    redis: float
    cores: dict[int, float]

    @property
    def client_side(self) -> float:
        return self.loadgen + self.redis


class UsageMeter:
    def __init__(self, server_pid: int, redis_pid: int) -> None:
        self.server_pid = server_pid
        self.redis_pid = redis_pid
        self._t = 0.0
        self._server = self._loadgen = self._redis = 0.0
        self._cores: dict[int, tuple[int, int]] = {}

    def start(self) -> None:
        self._t = time.monotonic()
        self._server = proc_cpu_seconds(self.server_pid)
        self._redis = proc_cpu_seconds(self.redis_pid)
        self._loadgen = time.process_time()
        self._cores = core_times()

    def stop(self) -> tuple[Usage, float]:
        """The usage since `start()`, and the server's CPU seconds in that time."""
        wall = max(time.monotonic() - self._t, 1e-9)
        server = proc_cpu_seconds(self.server_pid) - self._server
        cores: dict[int, float] = {}
        for cpu, (busy, total) in core_times().items():
            b0, t0 = self._cores.get(cpu, (busy, total))
            cores[cpu] = (busy - b0) / max(total - t0, 1)
        usage = Usage(
            wall=wall,
            server=server / wall,
            loadgen=(time.process_time() - self._loadgen) / wall,
            redis=(proc_cpu_seconds(self.redis_pid) - self._redis) / wall,
            cores=cores,
        )
        return usage, server


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    index = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[index]


@dataclass
class Latency:
    samples: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, values: array[float]) -> Latency:
        ordered = sorted(values)
        return cls(
            samples=len(ordered),
            p50_ms=percentile(ordered, 0.50) * 1000,
            p90_ms=percentile(ordered, 0.90) * 1000,
            p99_ms=percentile(ordered, 0.99) * 1000,
            max_ms=(ordered[-1] * 1000) if ordered else math.nan,
        )


@dataclass
class StepResult:
    rate_logs: float  # offered logs/s
    offered: float  # offered deliveries/s
    sent: int
    expected: int  # deliveries expected (sent x streams)
    delivered: int
    achieved: float  # deliveries / (last delivery - first send)
    lag_s: float  # last delivery - last send
    lag_limit_s: float
    complete: bool
    sustained: bool
    server_cpu_us_per_delivery: float
    publish_rate: float  # logs/s actually sent: (sent - 1) / (last send - first send)
    server_core: float  # the service process, share of one core
    loadgen_core: float  # this process (stream readers + publisher)
    redis_core: float
    cores: dict[int, float]  # every core's busy share, whoever used it
    other_server_core: float  # server core busy minus the service: other load (noise)
    other_client_core: float  # client core busy minus load generator and redis
    reads_per_delivery: float
    latency: Latency | None
    dead_streams: int
    retried: bool = False
    # Deliveries once the backlog of a step that was not complete in time had drained.
    delivered_after_drain: int | None = None

    def line(self) -> str:
        lat = f" p99 {self.latency.p99_ms:7.1f} ms" if self.latency else ""
        verdict = "ok  " if self.sustained else "FAIL"
        noise = max(self.other_server_core, self.other_client_core)
        other = f" other load {self.other_server_core:.0%}/{self.other_client_core:.0%}"
        return (
            f"  {verdict} offered {self.offered:9,.0f}/s ({self.rate_logs:8.1f} logs/s) "
            f"achieved {self.achieved:9,.0f}/s lag {self.lag_s:6.3f}s "
            f"server {self.server_core:4.0%} client {self.loadgen_core:4.0%}+"
            f"{self.redis_core:3.0%} {self.server_cpu_us_per_delivery:6.2f} µs/dlv{lat}"
            + (other if noise >= NOISY else "")
        )


@dataclass
class TierResult:
    streams: int
    connect_s: float = math.nan
    rss_before_kib: int = 0
    rss_after_kib: int = 0
    rss_per_stream_kib: float = math.nan
    idle_server_core: float = math.nan
    steps: list[StepResult] = field(default_factory=list)
    max_sustained: StepResult | None = None
    first_failure: StepResult | None = None
    limit: str = "not measured"
    latency_rate_logs: float = math.nan
    latency_step: StepResult | None = None
    redis_floor: Latency | None = None  # the same logs, read by a plain Redis subscriber
    server_counters: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class BenchContext:
    args: argparse.Namespace
    pool: StreamPool
    recorder: Recorder
    publisher: Publisher
    logs: LogFactory
    meter: UsageMeter


async def run_step(
    ctx: BenchContext, rate_logs: float, seconds: float, *, latency_all: bool = False
) -> StepResult:
    """Publish at `rate_logs` for about `seconds`, then wait for every stream to have every log.

    Sustained means: every stream got every log, no stream was closed, the last stream had
    the last log within `lag_limit` of its send (10 % of the step plus 0.2 s), so the backlog
    did not grow by more than that over the step, and the p99 latency on the sampled streams
    was within `--max-p99-ms`.
    """
    pool, rec = ctx.pool, ctx.recorder
    n = len(pool)
    count = max(5, round(rate_logs * seconds))
    pool.rebase()
    total0, reads0 = rec.total, rec.reads
    rec.latencies = array("d")
    saved = [s.sampled for s in pool.streams]
    if latency_all:
        for s in pool.streams:
            s.sampled = True
    rec.recording = True
    ctx.meter.start()
    try:
        run = await publish_at(ctx.publisher, ctx.logs, rate_logs, count, time_limit=seconds * 3)
        span = max(run.last_wall - run.first_wall, 1e-3)
        lag_limit = 0.1 * span + 0.2
        # Long enough to tell "late" from "lost", short enough to bound a step.
        hard = time.monotonic() + max(2.0, 2 * lag_limit)
        behind = await pool.wait_all(run.sent, hard)
        usage, server_cpu = ctx.meter.stop()
    finally:
        rec.recording = False
        if latency_all:
            for s, was in zip(pool.streams, saved, strict=True):
                s.sampled = was
    complete = not behind
    delivered = rec.total - total0
    done_wall = max((s.last_rx for s in pool.streams), default=run.last_wall)
    lag = done_wall - run.last_wall if complete else math.inf
    # The first log's deliveries open the interval, so they are not counted in it.
    achieved = delivered * (run.sent - 1) / run.sent / max(done_wall - run.first_wall, 1e-3)
    dead = len(pool.dead())
    args = ctx.args
    latency = Latency.of(rec.latencies) if rec.latencies else None
    p99_ok = latency is None or latency.p99_ms <= args.max_p99_ms
    server_busy = usage.cores.get(args.server_cpu, math.nan) if args.server_cpu is not None else 0
    client_busy = usage.cores.get(args.client_cpu, math.nan) if args.client_cpu is not None else 0
    result = StepResult(
        rate_logs=rate_logs,
        offered=rate_logs * n,
        sent=run.sent,
        expected=run.sent * n,
        delivered=delivered,
        achieved=achieved,
        lag_s=lag,
        lag_limit_s=lag_limit,
        complete=complete,
        sustained=complete and dead == 0 and lag <= lag_limit and p99_ok,
        server_cpu_us_per_delivery=server_cpu * 1e6 / max(delivered, 1),
        publish_rate=(run.sent - 1) / span,
        server_core=usage.server,
        loadgen_core=usage.loadgen,
        redis_core=usage.redis,
        cores=usage.cores,
        other_server_core=max(0.0, server_busy - usage.server),
        other_client_core=max(0.0, client_busy - usage.client_side),
        reads_per_delivery=(rec.reads - reads0) / max(delivered, 1),
        latency=latency,
        dead_streams=dead,
    )
    rec.latencies = array("d")
    if not complete:
        # Let a backlog drain (bounded) so the next step starts clean.
        await pool.wait_all(run.sent, time.monotonic() + max(10.0, span * 3))
        result.delivered_after_drain = rec.total - total0
    return result


def bottleneck(step: StepResult, args: argparse.Namespace) -> str | None:
    """Which core was saturated in `step`, and by whom; None when neither was."""
    pinned_cores = args.server_cpu is not None
    server_busy = step.cores.get(args.server_cpu, 0.0) if pinned_cores else step.server_core
    client_busy = step.cores.get(args.client_cpu, 0.0) if pinned_cores else step.loadgen_core
    client_own = step.loadgen_core + step.redis_core
    sides: list[str] = []
    if server_busy >= SATURATED or step.server_core >= SATURATED:
        own = step.server_core >= OWN_SHARE
        sides.append("server CPU" if own else "server core shared with other processes")
    if client_busy >= SATURATED or client_own >= SATURATED:
        own = client_own >= OWN_SHARE
        sides.append("load generator" if own else "client core shared with other processes")
    return " + ".join(sides) or None


def _noisy(step: StepResult) -> bool:
    return max(step.other_server_core, step.other_client_core) >= NOISY


async def find_max(ctx: BenchContext, tier: TierResult, start: float, log: Log) -> None:
    """Step the offered deliveries/s up by `--growth` until a step is not sustained, then
    bisect between the best sustained and the lowest failed rate down to `--resolution`.

    A step that failed while other processes loaded a core is run once more.
    """
    args = ctx.args
    n = len(ctx.pool)
    lo: float | None = None  # deliveries/s
    hi: float | None = None
    rate = start
    for _ in range(args.max_steps):
        step = await run_step(ctx, rate / n, args.step_seconds)
        log(step.line())
        if not step.sustained and step.complete and not step.dead_streams and _noisy(step):
            tier.steps.append(step)
            await wait_quiet(args, log)
            step = await run_step(ctx, rate / n, args.step_seconds)
            step.retried = True
            log(step.line() + " (retry: the first run was noisy)")
        tier.steps.append(step)
        if step.sustained:
            lo = rate
            if tier.max_sustained is None or step.achieved > tier.max_sustained.achieved:
                tier.max_sustained = step
            if hi is None and "load generator" in (bottleneck(step, args) or ""):
                tier.notes.append("the load generator saturated its core before a step failed")
                break
        else:
            hi = rate
            if tier.first_failure is None or rate < tier.first_failure.offered:
                tier.first_failure = step
            if step.dead_streams or (not step.complete and ctx.pool.behind(step.sent)):
                tier.notes.append("streams lost logs or were closed: stepping stopped")
                break
        if hi is None:
            rate *= args.growth
        elif lo is None:
            rate /= args.growth
        else:
            if hi / lo < 1.0 + args.resolution:
                break
            rate = math.sqrt(lo * hi)
    if tier.max_sustained is None:
        tier.limit = "nothing sustained"
    elif tier.first_failure is None:
        saturated = bottleneck(tier.max_sustained, args)
        tier.limit = f"{saturated} (no step failed)" if saturated else "not reached"
    else:
        tier.limit = bottleneck(tier.first_failure, args) or "unclear: no core saturated"
    if any(_noisy(step) for step in tier.steps):
        worst = max(max(s.other_server_core, s.other_client_core) for s in tier.steps)
        tier.notes.append(f"other processes used up to {worst:.0%} of a core during steps")


async def wait_quiet(args: argparse.Namespace, log: Log) -> float:
    """Wait until the two cores are idle, at most `--quiet-wait` s at a time and
    `--quiet-budget` s in the whole run; returns the last busy share seen."""
    cores = [c for c in (args.server_cpu, args.client_cpu) if c is not None]
    start = time.monotonic()
    deadline = start + max(0.0, min(args.quiet_wait, args.quiet_left))
    busy = 0.0
    next_note = start
    while True:
        before = core_times()
        await asyncio.sleep(1.0)
        after = core_times()
        busy = max(
            ((after[c][0] - before[c][0]) / max(after[c][1] - before[c][1], 1) for c in cores),
            default=0.0,
        )
        now = time.monotonic()
        if busy < NOISY / 2 or now >= deadline:
            break
        if now >= next_note:
            log(f"  waiting for a quiet machine: a core is {busy:.0%} busy")
            next_note = now + 5
    args.quiet_left -= time.monotonic() - start
    return busy


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def run_tier(
    args: argparse.Namespace,
    redis: PrivateRedis,
    n: int,
    previous_max: float | None,
    workdir: Path,
) -> TierResult:
    tier = TierResult(streams=n)
    room = f"bench-{n}-{secrets.token_hex(4)}"
    service = ServiceUnderTest(
        redis.url, args.server_cpu, n, workdir / f"service-{n}.log", args.source
    )
    _log(f"\n== {n} streams (room {room}, service log {service.log_path})")
    busy = await wait_quiet(args, _log)
    if busy >= NOISY / 2:
        tier.notes.append(f"machine not quiet at start: a core {busy:.0%} busy")
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        service.start()
        try:
            await service.wait_ready(http)
            await _measure(args, tier, service, redis, http, room, n, previous_max)
            tier.server_counters = await service.counters(http)
        finally:
            service.stop()
    return tier


async def _measure(
    args: argparse.Namespace,
    tier: TierResult,
    service: ServiceUnderTest,
    redis: PrivateRedis,
    http: aiohttp.ClientSession,
    room: str,
    n: int,
    previous_max: float | None,
) -> None:
    recorder = Recorder()
    token = mint_token(SECRET, rooms=[room], ttl=6 * 3600, sub="bench")
    publisher: Publisher
    if args.publish == "http":
        publisher = HttpPublisher(http, service.url, room)
    else:
        publisher = RedisPublisher(redis.url, room)
    logs = LogFactory(args.payload_bytes)
    meter = UsageMeter(service.pid, redis.pid)
    try:
        # Warm-up: the code paths of a stream and of a delivery run once before RSS is read.
        warm = StreamPool(service.port, room, token, recorder)
        await warm.open(10, concurrency=10, sample_every=1)
        for _ in range(3):
            await publisher.send(logs.batch(1))
        await warm.wait_all(3, time.monotonic() + 5)
        await warm.close()
        await asyncio.sleep(0.5)
        tier.rss_before_kib = proc_rss_kib(service.pid)

        pool = StreamPool(service.port, room, token, recorder)
        sample_every = max(1, math.ceil(n / args.sampled_streams))
        t0 = time.monotonic()
        await pool.open(n, concurrency=args.connect_concurrency, sample_every=sample_every)
        tier.connect_s = time.monotonic() - t0
        # The streams live for the whole run: keep the load generator's own cyclic GC off them.
        gc.collect()
        gc.freeze()
        await asyncio.sleep(args.settle)
        meter.start()
        await asyncio.sleep(1.0)
        idle, _ = meter.stop()
        tier.idle_server_core = idle.server
        tier.rss_after_kib = proc_rss_kib(service.pid)
        tier.rss_per_stream_kib = (tier.rss_after_kib - tier.rss_before_kib) / n
        _log(
            f"  opened {n} streams in {tier.connect_s:.2f}s; server RSS "
            f"{tier.rss_before_kib / 1024:.1f} → {tier.rss_after_kib / 1024:.1f} MiB "
            f"({tier.rss_per_stream_kib:.1f} KiB/stream), idle server CPU {idle.server:.1%}"
        )

        ctx = BenchContext(args, pool, recorder, publisher, logs, meter)
        start = args.start_rate if previous_max is None else max(1000.0, previous_max / 2)
        await find_max(ctx, tier, start, _log)

        best = tier.max_sustained
        if best is not None and not any("lost" in note for note in tier.notes):
            rate = min(args.latency_deliveries, args.latency_load * best.achieved) / n
            await wait_quiet(args, _log)
            tier.latency_rate_logs = rate
            tap = await RedisTap.open(redis.port, PLAIN.channel(room), recorder)
            try:
                step = await run_step(ctx, rate, args.latency_seconds, latency_all=True)
            finally:
                tap.close()
            tier.latency_step = step
            tier.redis_floor = Latency.of(tap.latencies) if tap.latencies else None
            floor = tier.redis_floor
            _log(
                "  latency:"
                + step.line()
                + (f" (plain Redis subscriber: p50 {floor.p50_ms:.2f} ms)" if floor else "")
            )
            if not step.sustained:
                tier.notes.append("the latency phase was not sustained")
        await pool.close()
    finally:
        gc.unfreeze()
        await publisher.close()


# -- report --------------------------------------------------------------------------------


def _fmt(value: float, spec: str) -> str:
    return NA if math.isnan(value) else format(value, spec)


def _columns() -> list[tuple[str, Callable[[TierResult], str]]]:
    """The table: a header and how to fill it in, per column."""

    def best(fmt: Callable[[StepResult], str]) -> Callable[[TierResult], str]:
        return lambda t: fmt(t.max_sustained) if t.max_sustained else NA

    def lat(fmt: Callable[[StepResult, Latency], str]) -> Callable[[TierResult], str]:
        def cell(t: TierResult) -> str:
            step = t.latency_step
            return fmt(step, step.latency) if step and step.latency else NA

        return cell

    def floor(t: TierResult) -> str:
        f = t.redis_floor
        return f"{f.p50_ms:.2f} / {f.p99_ms:.2f}" if f else NA

    return [
        ("streams", lambda t: f"{t.streams:,}"),
        ("connect s", lambda t: _fmt(t.connect_s, ".1f")),
        ("RSS KiB / idle stream", lambda t: _fmt(t.rss_per_stream_kib, ".1f")),
        ("max sustained deliveries/s", best(lambda b: _fmt(b.achieved, ",.0f"))),
        ("at logs/s", best(lambda b: _fmt(b.rate_logs, ",.1f"))),
        ("logs / read", best(lambda b: _fmt(1 / max(b.reads_per_delivery, 1e-9), ".1f"))),
        ("server µs / delivery at max", best(lambda b: _fmt(b.server_cpu_us_per_delivery, ".2f"))),
        ("server core at max", best(lambda b: _fmt(b.server_core, ".0%"))),
        (
            "≈ deliveries/s at 100 % server core",
            best(lambda b: _fmt(b.achieved / max(b.server_core, 1e-9), ",.0f")),
        ),
        (
            "client core at max",
            best(lambda b: f"{b.loadgen_core:.0%} + redis {b.redis_core:.0%}"),
        ),
        ("latency phase logs/s", lambda t: _fmt(t.latency_rate_logs, ".1f")),
        (
            "server µs / delivery, latency phase",
            lat(lambda s, _: _fmt(s.server_cpu_us_per_delivery, ".2f")),
        ),
        ("p50 ms", lat(lambda _, la: _fmt(la.p50_ms, ".1f"))),
        ("p99 ms", lat(lambda _, la: _fmt(la.p99_ms, ".1f"))),
        ("Redis-only p50 / p99 ms", floor),
        ("limited by", lambda t: t.limit),
    ]


def markdown(tiers: Sequence[TierResult]) -> str:
    columns = _columns()
    rows = [
        "| " + " | ".join(name for name, _ in columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for t in tiers:
        rows.append("| " + " | ".join(cell(t) for _, cell in columns) + " |")
    notes = [f"- {t.streams:,} streams: {'; '.join(t.notes)}" for t in tiers if t.notes]
    if notes:
        rows += ["", "Notes:", *notes]
    return "\n".join(rows)


def environment() -> dict[str, Any]:
    def git(*argv: str) -> str:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            return subprocess.run(
                ["git", *argv], cwd=ROOT, check=True, capture_output=True, text=True, timeout=5
            ).stdout.strip()
        return ""

    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    try:
        uvloop_version: str | None = importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        uvloop_version = None
    return {
        "python": platform.python_version(),
        "kernel": platform.release(),
        "cpu": cpu_model,
        "cpus": os.cpu_count(),
        "uvloop": uvloop_version,
        "aiohttp": aiohttp.__version__,
        "redis_server": subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=False
        ).stdout.strip(),
        "git_commit": git("rev-parse", "HEAD"),
        # Only matters when the service ran from the work tree (no --rev).
        "work_tree_service_dirty": bool(git("status", "--porcelain", "--", "service")),
    }


def write_json(path: Path, tiers: Sequence[TierResult], args: argparse.Namespace) -> None:
    doc = {
        "benchmark": "fanout",
        "started": args.started,
        "command": " ".join([Path(sys.executable).name, "-m", "bench.fanout", *sys.argv[1:]]),
        "config": {
            k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "started"
        },
        "environment": environment(),
        "tiers": [asdict(t) for t in tiers],
    }
    # NaN/inf are not JSON: write them as null.
    text = orjson.dumps(_clean(doc), option=orjson.OPT_INDENT_2)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text + b"\n")


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


# -- main ----------------------------------------------------------------------------------


def _streams(raw: str) -> list[int]:
    values = [int(part) for part in raw.split(",") if part.strip()]
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("expected positive counts such as 100,1000,5000")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.fanout", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    p.add_argument("--streams", type=_streams, default=[100, 1000, 5000], help="N, e.g. 100,1000")
    p.add_argument("--publish", choices=("redis", "http"), default="redis", help="publish path")
    p.add_argument("--payload-bytes", type=int, default=256, help="size of one log's JSON")
    p.add_argument("--step-seconds", type=float, default=4.0, help="length of one rate step")
    p.add_argument("--start-rate", type=float, default=10000, help="first step, deliveries/s")
    p.add_argument("--growth", type=float, default=2.0, help="rate factor between steps")
    p.add_argument("--resolution", type=float, default=0.12, help="stop bisecting below this")
    p.add_argument("--max-steps", type=int, default=12, help="rate steps per N at most")
    p.add_argument(
        "--max-p99-ms", type=float, default=500, help="a sustained step's p99 latency at most"
    )
    p.add_argument(
        "--latency-deliveries",
        type=float,
        default=10000,
        help="latency phase rate, deliveries/s (logs/s = this / N)",
    )
    p.add_argument(
        "--latency-load",
        type=float,
        default=0.5,
        help="cap the latency phase at this share of the max sustained deliveries/s",
    )
    p.add_argument("--latency-seconds", type=float, default=8.0, help="latency phase length")
    p.add_argument(
        "--sampled-streams", type=int, default=16, help="streams read for latency in rate steps"
    )
    p.add_argument("--connect-concurrency", type=int, default=100, help="streams opening at once")
    p.add_argument("--settle", type=float, default=1.0, help="seconds after opening, before RSS")
    p.add_argument("--server-cpu", type=int, default=0, help="core for the service")
    p.add_argument("--client-cpu", type=int, default=1, help="core for load generator + redis")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    p.add_argument(
        "--quiet-wait", type=float, default=60, help="wait up to this long for idle cores"
    )
    p.add_argument(
        "--quiet-budget", type=float, default=180, help="total quiet waiting in a run at most"
    )
    p.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/)")
    p.add_argument(
        "--rev",
        default=None,
        help="run the service of this git revision (e.g. HEAD) instead of the work tree",
    )
    args = p.parse_args(argv)
    if args.no_pin:
        args.server_cpu = args.client_cpu = None
    args.started = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    args.rev_commit = None
    args.quiet_left = args.quiet_budget
    return args


def export_revision(rev: str, into: Path) -> str:
    """`git archive` the `service` package of `rev` into `into`; returns the commit id."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--verify", f"{rev}^{{commit}}"],
            cwd=ROOT, check=True, capture_output=True, text=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        archive = subprocess.run(
            ["git", "archive", "--format=tar", commit, "service"],
            cwd=ROOT, check=True, capture_output=True, timeout=60,
        ).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SetupError(f"cannot export {rev!r}: {exc}") from None
    return commit


async def amain(args: argparse.Namespace) -> int:
    tiers: list[TierResult] = []
    out = args.out or RESULTS_DIR / f"fanout-{args.started}.json"
    redis = PrivateRedis(args.client_cpu)
    with tempfile.TemporaryDirectory(prefix="roomlogs-bench-") as tmp:
        try:
            args.source = ROOT
            if args.rev:
                args.source = Path(tmp) / "src"
                args.source.mkdir()
                args.rev_commit = export_revision(args.rev, args.source)
                _log(f"service from {args.rev} ({args.rev_commit[:12]}), not the work tree")
            redis.start()
            previous: float | None = None
            for n in args.streams:
                tier = await run_tier(args, redis, n, previous, Path(tmp))
                tiers.append(tier)
                if tier.max_sustained is not None:
                    previous = tier.max_sustained.achieved
        except SetupError as exc:
            _log(f"setup failed: {exc}")
            if tiers:
                write_json(out, tiers, args)
            return 1
        finally:
            redis.stop()
    write_json(out, tiers, args)
    print(markdown(tiers))
    print(f"\nJSON: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cpus = os.sched_getaffinity(0)
    if args.server_cpu is not None:
        if not {args.server_cpu, args.client_cpu} <= cpus or args.server_cpu == args.client_cpu:
            _log(f"setup failed: need two distinct cores among {sorted(cpus)}; or use --no-pin")
            return 1
        os.sched_setaffinity(0, {args.client_cpu})
    try:
        raise_nofile(max(args.streams) * 2 + 1024)
    except SetupError as exc:
        _log(f"setup failed: {exc}")
        return 1
    try:
        import uvloop
    except ImportError:
        _log("uvloop is not installed: the load generator runs on asyncio's own loop")
        return asyncio.run(amain(args))
    return uvloop.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
