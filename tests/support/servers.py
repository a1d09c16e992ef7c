"""Real servers for the tests, each on a free port and stopped by PID: a private
redis-server, the service started the production way (`python -m service serve`), and nginx
with config/nginx.conf. Never a stand-in: a missing Debian package is installed, not skipped."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson

from tests.support.aio import poll_until
from tests.support.paths import ROOT
from tests.support.tls import Certificates

NGINX_CONF: Final = ROOT / "config" / "nginx.conf"


# -- ports and binaries ----------------------------------------------------------------------------


def _ephemeral_floor() -> int:
    """The lowest port the kernel hands to outgoing connections (32768 on Linux by default)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_FLOOR: Final = _ephemeral_floor()
_LOWEST: Final = 10000


def free_port(*, span: int = 0) -> int:
    """A port free now, below the ephemeral range when there is room: a port chosen by
    binding to 0 is an ephemeral one, and a server started on it a moment later can find it
    taken by some process' outgoing connection (a flake seen under load). With `span`, port +
    span is free and below that range too (a Redis Cluster node's bus port)."""
    top = _FLOOR - span
    for _ in range(200 if top - _LOWEST > 1000 else 0):
        port = random.randrange(_LOWEST, top)
        if _bindable(port) and (not span or _bindable(port + span)):
            return port
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not span or (port + span <= 65535 and _bindable(port + span)):
            return port
    raise RuntimeError("no free port")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


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


# -- redis-server ----------------------------------------------------------------------------------


def redis_server_binary() -> str:
    return debian_binary("redis-server", "redis-server")


class RedisServer:
    """A redis-server of our own on a free port: never the data of an existing Redis."""

    def __init__(
        self,
        port: int | None = None,
        *,
        aof_dir: Path | None = None,
        tls: Certificates | None = None,
        tls_auth_clients: bool = False,
    ) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        # With a directory: an append-only file fsynced on every write, so a SIGKILL and a
        # restart keep every acknowledged write (the soak's Redis).
        self.aof_dir = aof_dir
        # With certificates: TLS only (`--port 0`), the server's certificate signed by
        # `tls.ca`; with `tls_auth_clients`, a client must present one signed by it too.
        self.tls = tls
        self.tls_auth_clients = tls_auth_clients

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def _listen_args(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        return [
            "--port", "0",
            "--tls-port", str(self.port),
            "--tls-cert-file", str(self.tls.server_cert),
            "--tls-key-file", str(self.tls.server_key),
            "--tls-ca-cert-file", str(self.tls.ca),
            "--tls-auth-clients", "yes" if self.tls_auth_clients else "no",
        ]  # fmt: skip

    def _ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw:
            if self.tls is None:
                raw.sendall(b"PING\r\n")
                return raw.recv(16).startswith(b"+PONG")
            context = ssl.create_default_context(cafile=self.tls.ca)
            context.load_cert_chain(self.tls.client_cert, self.tls.client_key)
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                redis_server_binary(),
                *self._listen_args(),
                "--bind", "127.0.0.1",
                "--save", "",
                "--daemonize", "no",
                "--loglevel", "warning",
                *(
                    ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.aof_dir)]
                    if self.aof_dir is not None
                    else ["--appendonly", "no"]
                ),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            with contextlib.suppress(OSError):
                if self._ping():
                    return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def kill(self) -> None:
        """Stop it by PID, at once (SIGKILL): what an outage looks like to the service."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def pause(self) -> None:
        """SIGSTOP: a stalled Redis, whose sockets stay open and say nothing."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # a paused one could not act on SIGTERM
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
            [redis_cli, "-p", str(self.port), *self._cli_tls(), *args],
            check=True,
            capture_output=True,
            timeout=10,
        )
        return out.stdout.decode()

    def calls(self) -> dict[str, int]:
        """The commands this server has run so far, and how often (INFO commandstats)."""
        counts: dict[str, int] = {}
        for line in self.cli("INFO", "commandstats").splitlines():
            name, _, rest = line.partition(":")
            if name.startswith("cmdstat_"):
                counts[name.removeprefix("cmdstat_")] = int(
                    rest.split(",")[0].removeprefix("calls=")
                )
        return counts

    def _cli_tls(self) -> list[str]:
        if self.tls is None:
            return []
        return [
            "--tls", "--cacert", str(self.tls.ca),
            "--cert", str(self.tls.client_cert), "--key", str(self.tls.client_key),
        ]  # fmt: skip


# -- the service -----------------------------------------------------------------------------------


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


# -- nginx -----------------------------------------------------------------------------------------


def nginx_binary() -> str:
    return debian_binary("nginx", "nginx", "/usr/sbin/nginx")


def render_nginx_conf(text: str, *, port: int, tls_port: int, gateways: Sequence[int]) -> str:
    """config/nginx.conf for this machine: the `# @listen` line listens on 127.0.0.1:`port`, the
    `# @listen-tls` line on 127.0.0.1:`tls_port` (its `ssl http2` kept), the `# @upstream` line is
    repeated once per gateway port with `gateway:8080 resolve` replaced (its
    max_fails/fail_timeout kept). Nothing else changes."""
    out: list[str] = []
    seen = {"listen": 0, "listen-tls": 0, "upstream": 0}
    for line in text.splitlines():
        code, _, tag = line.partition("# @")
        tag = tag.strip()
        if tag == "listen":
            seen["listen"] += 1
            indent = code[: len(code) - len(code.lstrip())]
            out.append(f"{indent}listen 127.0.0.1:{port};")
        elif tag == "listen-tls":
            seen["listen-tls"] += 1
            address = re.search(r"\blisten\s+(\S+)", code)
            assert address is not None, line
            out.append(code.replace(address.group(1), f"127.0.0.1:{tls_port}", 1).rstrip())
        elif tag == "upstream":
            seen["upstream"] += 1
            assert "gateway:8080 resolve" in code, line
            out.extend(
                code.replace("gateway:8080 resolve", f"127.0.0.1:{gw}").rstrip() for gw in gateways
            )
        else:
            out.append(line)
    assert seen == {"listen": 1, "listen-tls": 1, "upstream": 1}, f"nginx.conf markers: {seen}"
    return "\n".join(out) + "\n"


def dev_cert(directory: Path) -> None:
    """scripts/dev-cert into `directory`: tls.crt and tls.key, self-signed for localhost."""
    subprocess.run(
        [str(ROOT / "scripts" / "dev-cert"), str(directory)],
        check=True,
        capture_output=True,
        timeout=30,
    )


class Nginx:
    """nginx in the foreground on free ports (plain and TLS), its prefix, logs, pid and the
    certificate config/nginx.conf names (`certs/`, made by scripts/dev-cert) in `workdir`."""

    def __init__(self, workdir: Path, gateways: Sequence[int]) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.tls_port = free_port()
        self.conf = workdir / "nginx.conf"
        self.conf.write_text(
            render_nginx_conf(
                NGINX_CONF.read_text(), port=self.port, tls_port=self.tls_port, gateways=gateways
            )
        )
        dev_cert(workdir / "certs")
        self.access_log = workdir / "access.log"
        self.error_log = workdir / "error.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"https://127.0.0.1:{self.tls_port}"

    def command(self, *extra: str) -> list[str]:
        directives = f"daemon off; pid {self.workdir}/nginx.pid; error_log stderr;"
        return [
            nginx_binary(),
            "-p",
            f"{self.workdir}/",
            "-c",
            str(self.conf),
            "-g",
            directives,
            *extra,
        ]

    def check(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command("-t"), capture_output=True, text=True, timeout=30)

    def start(self) -> None:
        with open(self.access_log, "ab") as out, open(self.error_log, "ab") as err:
            # The config logs access to /dev/stdout and errors to /dev/stderr: these files.
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=err)

    async def wait_up(self, timeout: float = 15) -> None:
        async with aiohttp.ClientSession() as http:

            async def up() -> bool:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"nginx exited: {self.errors()}")
                try:
                    async with http.get(self.url + "/nginx-health") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            await poll_until(up, timeout=timeout)

    def stop(self) -> None:
        """By PID: SIGTERM is nginx's fast shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def errors(self) -> str:
        return self.error_log.read_text()[-3000:] if self.error_log.exists() else ""

    def access_size(self) -> int:
        """Where the next line will start (the end of the last complete one)."""
        if not self.access_log.exists():
            return 0
        return self.access_log.read_bytes().rfind(b"\n") + 1

    def access_entries(self, since: int = 0) -> list[dict[str, Any]]:
        """The complete lines after `since`: nginx may be writing the last one right now."""
        with open(self.access_log, "rb") as f:
            f.seek(since)
            data = f.read()
        data = data[: data.rfind(b"\n") + 1]
        return [orjson.loads(line) for line in data.splitlines() if line.strip()]
