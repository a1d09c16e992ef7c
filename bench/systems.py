"""The systems `bench.compare` measures side by side, each as real processes on loopback.

- `roomlogs`: `python -m service serve`, the production entry point, on Redis.
- `minimal`: `python -m bench.minimal`, the reference limit (no framework, one PSUBSCRIBE).
- `tutorial`: `uvicorn bench.tutorial:app`, sse-starlette with one Redis subscription per stream.
- `nchan`: Debian's nginx with `libnginx-mod-nchan`, one worker, its memory store; logs are
  published to its HTTP publisher location (nchan does not read plain Redis channels).

Each runs pinned with `taskset` to the server cores, gets a free port, and is stopped with
SIGTERM (then SIGKILL). Its CPU and RSS are read over the whole process tree (nginx's master
and worker, roomlogs' supervisor and workers).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from .fanout import HOST, SECRET, SetupError, _stop, free_port, proc_cpu_seconds, proc_rss_kib
from .loadgen import Framing, NchanPublisher, Publisher, ScriptPublisher

ROOT: Final = Path(__file__).resolve().parent.parent
NCHAN_MODULE: Final = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")

LF_CONNECTED: Final = Framing.lines(b"\n", b"event: connected\n", b"event: unavailable\n")


def tree_pids(root: int) -> list[int]:
    """`root` and all its descendants, from /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(raw[raw.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def tree_cpu_seconds(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            total += proc_cpu_seconds(pid)
    return total


def tree_rss_kib(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, SetupError):
            total += proc_rss_kib(pid)
    return total


async def http_status(port: int, path: str, limit_s: float = 2.0) -> int | None:
    """The status code of `GET path` on 127.0.0.1:port, or None when nothing answers."""
    try:
        async with asyncio.timeout(limit_s):
            reader, writer = await asyncio.open_connection(HOST, port)
            try:
                writer.write(
                    f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
                )
                line = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError):
        return None
    parts = line.split()
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None


class System:
    """One system under test: a process tree on a free port."""

    key = ""
    label = ""
    framing = LF_CONNECTED
    ready_path = "/"
    # The query string of the stream GET (`agentType=bench`): only roomlogs takes one, the
    # peers have no filters and are always asked without.
    query = ""

    def __init__(self, redis_url: str, workdir: Path, cpus: str | None, streams: int) -> None:
        self.redis_url = redis_url
        self.workdir = workdir
        self.cpus = cpus
        self.streams = streams
        self.port = free_port()
        self.log_path = workdir / f"{self.key}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._pids: list[int] = []

    # -- what each system defines ---------------------------------------------------------

    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {}

    def cwd(self) -> Path:
        return ROOT

    def publisher(self, rooms: Sequence[str]) -> Publisher:
        return ScriptPublisher(self.redis_url, rooms)

    @property
    def uses_redis(self) -> bool:
        return True

    async def ready(self) -> bool:
        return await http_status(self.port, self.ready_path) is not None

    # -- common -----------------------------------------------------------------------------

    def request(self, room: str, token: str) -> bytes:
        """The same GET for every system (the token only matters to roomlogs), with
        `?query` when the system has one."""
        path = f"/api/v1/rooms/{room}/logs" + (f"?{self.query}" if self.query else "")
        return (
            f"GET {path} HTTP/1.1\r\n"
            f"Host: {HOST}:{self.port}\r\n"
            f"Authorization: Bearer {token}\r\n"
            "Accept: text/event-stream\r\n"
            "Cache-Control: no-cache\r\n"
            "\r\n"
        ).encode("ascii")

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "CORS_"))}
        env.update(self.env())
        argv = self.argv()
        if self.cpus is not None:
            taskset = shutil.which("taskset")
            if taskset is None:
                raise SetupError("taskset is missing (util-linux); run with --no-pin")
            argv = [taskset, "-c", self.cpus, *argv]
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                argv, cwd=self.cwd(), env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def output_tail(self, chars: int = 1500) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    async def wait_ready(self, limit_s: float = 30) -> None:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise SetupError(f"{self.key} exited: {self.output_tail()}")
            if await self.ready():
                await asyncio.sleep(0.3)
                self._pids = tree_pids(self.proc.pid)
                return
            await asyncio.sleep(0.05)
        raise SetupError(f"{self.key} not ready within {limit_s:g} s: {self.output_tail()}")

    @property
    def pids(self) -> list[int]:
        return self._pids

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self._pids)

    def rss_kib(self) -> int:
        return tree_rss_kib(self._pids)

    async def counters(self) -> dict[str, float]:
        return {}

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc, 15)
        self.proc = None


def established_inodes(port: int) -> set[int]:
    """Socket inodes of the ESTABLISHED TCP connections whose local port is `port` (the
    server's side of each client connection), from /proc/net/tcp and tcp6."""
    inodes: set[int] = set()
    for name in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) < 10 or fields[3] != "01":  # 01: ESTABLISHED
                    continue
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(int(fields[9]))
    return inodes


def socket_count(pid: int, inodes: set[int]) -> int:
    """How many of `inodes` process `pid` holds open."""
    count = 0
    fd_dir = Path(f"/proc/{pid}/fd")
    with contextlib.suppress(OSError):
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:[") and int(target[8:-1]) in inodes:
                    count += 1
    return count


def is_spawned_worker(pid: int) -> bool:
    """A multiprocessing `spawn` child (a worker), not its resource tracker."""
    with contextlib.suppress(OSError):
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    return False


class Roomlogs(System):
    key = "roomlogs"
    label = "roomlogs"
    ready_path = "/readyz"

    def __init__(
        self,
        redis_url: str,
        workdir: Path,
        cpus: str | None,
        streams: int,
        *,
        workers: int = 1,
        source: Path = ROOT,
        query: str = "",
    ) -> None:
        if workers > 1:
            self.key = f"roomlogs-w{workers}"
            self.label = f"roomlogs WORKERS={workers}"
        if query:
            # Filtered streams take the hub's per-stream path, not the shared room write.
            self.label = f"{self.label}, ?{query}"
            self.query = query
        super().__init__(redis_url, workdir, cpus, streams)
        self.workers = workers
        self.source = source
        # Per worker, the cores it is pinned to once it is up (None: the taskset of all).
        self.worker_cpus: list[set[int]] | None = None

    def worker_pids(self) -> list[int]:
        """The worker processes (the supervisor's spawned children), or the one process."""
        if self.proc is None:
            return []
        if self.workers == 1:
            return [self.proc.pid]
        return sorted(p for p in self.pids if p != self.proc.pid and is_spawned_worker(p))

    def worker_streams(self) -> list[int]:
        """Established client connections each worker holds (SO_REUSEPORT's split)."""
        inodes = established_inodes(self.port)
        return [socket_count(pid, inodes) for pid in self.worker_pids()]

    async def wait_ready(self, limit_s: float = 30) -> None:
        await super().wait_ready(limit_s)
        if self.worker_cpus is not None:
            pids = self.worker_pids()
            if len(pids) != len(self.worker_cpus):
                raise SetupError(f"{len(pids)} workers found, {self.workers} expected")
            for pid, cpus in zip(pids, self.worker_cpus, strict=True):
                os.sched_setaffinity(pid, cpus)

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "service", "serve"]

    def cwd(self) -> Path:
        return self.source

    def env(self) -> dict[str, str]:
        return {
            "REDIS_URL": self.redis_url,
            "JWT_SECRET": SECRET,
            "JWT_ALGORITHMS": "HS256",
            "LISTEN_HOST": HOST,
            "PORT": str(self.port),
            "HEARTBEAT_INTERVAL": "3600",
            "MAX_CONNECTIONS": str(self.streams * 2 + 1000),
            "SUBSCRIBER_BUFFER": "100000",
            "ROOM_CHECK": "off",
            "WORKERS": str(self.workers),
            "SHUTDOWN_TIMEOUT": "2",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "text",
        }

    async def ready(self) -> bool:
        if self.workers == 1:
            return await http_status(self.port, "/readyz") == 200
        # SO_REUSEPORT spreads connections: every worker must be up and live.
        assert self.proc is not None
        if len(tree_pids(self.proc.pid)) < self.workers + 1:
            return False
        for _ in range(4 * self.workers):
            if await http_status(self.port, "/readyz") != 200:
                return False
        return True

    async def counters(self) -> dict[str, float]:
        """A few /metrics counters, to cross-check what the load generator saw."""
        wanted = {
            "roomlogs_events_sent_total",
            "roomlogs_broker_messages_total",
            "roomlogs_slow_consumer_closes_total",
        }
        out: dict[str, float] = {}
        with contextlib.suppress(OSError, TimeoutError, ValueError):
            async with asyncio.timeout(5):
                reader, writer = await asyncio.open_connection(HOST, self.port)
                writer.write(
                    f"GET /metrics HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
                )
                body = await reader.read()
                writer.close()
            for line in body.decode("utf-8", "replace").splitlines():
                name, _, value = line.partition(" ")
                if name in wanted:
                    out[name] = out.get(name, 0.0) + float(value)
        return out


class Minimal(System):
    key = "minimal"
    label = "minimal uvloop server"

    def argv(self) -> list[str]:
        return [
            sys.executable, "-m", "bench.minimal",
            "--host", HOST, "--port", str(self.port), "--redis-url", self.redis_url,
        ]  # fmt: skip


class Tutorial(System):
    key = "tutorial"
    label = "sse-starlette, 1 Redis sub/stream"
    # sse-starlette ends its lines with CRLF.
    framing = Framing.lines(b"\r\n", b"event: connected\r\n")

    def argv(self) -> list[str]:
        return [
            sys.executable, "-m", "uvicorn", "bench.tutorial:app",
            "--host", HOST, "--port", str(self.port),
            "--log-level", "warning", "--no-access-log",
            "--backlog", "4096", "--timeout-graceful-shutdown", "2",
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        return {"REDIS_URL": self.redis_url}


class Nchan(System):
    key = "nchan"
    label = "nchan (nginx), 1 worker"
    # nchan says `: hi` once the subscriber is registered on the channel.
    framing = Framing.lines(b"\n", b": hi\n")

    @property
    def uses_redis(self) -> bool:
        return False

    def publisher(self, rooms: Sequence[str]) -> Publisher:
        return NchanPublisher(self.port, rooms)

    def config(self) -> str:
        prefix = self.workdir / f"nginx-{self.port}"
        for sub in ("temp", "logs"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
        return textwrap.dedent(
            f"""\
            load_module {NCHAN_MODULE};
            worker_processes 1;
            worker_rlimit_nofile 65536;
            daemon off;
            master_process on;
            user root;
            pid {prefix}/nginx.pid;
            error_log {prefix}/logs/error.log warn;
            events {{
                worker_connections 40000;
            }}
            http {{
                access_log off;
                keepalive_requests 100000000;
                keepalive_timeout 3600s;
                client_body_temp_path {prefix}/temp/body;
                proxy_temp_path {prefix}/temp/proxy;
                fastcgi_temp_path {prefix}/temp/fastcgi;
                uwsgi_temp_path {prefix}/temp/uwsgi;
                scgi_temp_path {prefix}/temp/scgi;
                nchan_shared_memory_size 512m;
                server {{
                    listen {HOST}:{self.port} backlog=4096;
                    location ~ ^/api/v1/rooms/([^/]+)/logs$ {{
                        nchan_subscriber eventsource;
                        nchan_channel_id $1;
                        nchan_subscriber_first_message newest;
                    }}
                    location ~ ^/pub/([^/]+)$ {{
                        nchan_publisher;
                        nchan_channel_id $1;
                        nchan_message_buffer_length 100;
                        nchan_message_timeout 60s;
                    }}
                    location / {{
                        return 404;
                    }}
                }}
            }}
            """
        )

    def argv(self) -> list[str]:
        path = self.workdir / f"nginx-{self.port}.conf"
        path.write_text(self.config())
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        return [nginx, "-c", str(path), "-p", str(self.workdir / f"nginx-{self.port}")]


def ensure_nchan() -> str | None:
    """nginx with the nchan module: installed with apt (as root) when missing. Returns why it
    cannot be had, or None."""
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx and NCHAN_MODULE.exists():
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "nginx or libnginx-mod-nchan missing (not root with apt-get to install them)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    packages = ["nginx", "libnginx-mod-nchan"]
    for attempt in range(2):
        if attempt:
            subprocess.run(
                ["apt-get", "update"], env=env, capture_output=True, timeout=600, check=False
            )
        done = subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", *packages],
            env=env, capture_output=True, timeout=900, check=False,
        )  # fmt: skip
        if done.returncode == 0 and NCHAN_MODULE.exists():
            return None
    return "apt-get install nginx libnginx-mod-nchan failed"


SYSTEMS: Final = {cls.key: cls for cls in (Roomlogs, Minimal, Tutorial, Nchan)}
