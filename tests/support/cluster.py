"""A real Redis Cluster for the tests: six redis-server processes (three primaries, three
replicas) on free private ports, `cluster-node-timeout 1000`, each in its own temporary
directory, made into a cluster by `redis-cli --cluster create`, and stopped by PID.

RESEARCH-SCALEOUT.md §5 measured the recipe on this kind of machine: `repl-diskless-sync-delay
0` (a replica that never synced never fails over), the bus port kept near the data port, and
"ready" meaning every node says `cluster_state:ok` and every replica's link is up.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pytest
from redis.crc import key_slot

from service.broker.keys import TAGGED
from tests.support.servers import free_port, redis_server_binary

NODES: Final = 6
READY_TIMEOUT: Final = 20.0
_ROOMS: Final = itertools.count()


def _free_port_pair() -> int:
    """A free port p whose bus port p+10000 is free too (redis' default bus offset)."""
    return free_port(span=10000)


@dataclass
class ClusterNodeProcess:
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                redis_server_binary(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(self.workdir / "nodes.conf"),
                "--cluster-node-timeout", "1000",
                "--repl-diskless-sync-delay", "0",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.workdir),
                "--daemonize", "no",
                "--loglevel", "warning",
                "--logfile", str(self.workdir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def restart(self) -> None:
        """Start again after `kill`, on the same port and directory: its nodes.conf kept, it
        rejoins the cluster (a killed primary: as a replica of the one promoted meanwhile)."""
        assert not self.alive()
        self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL by PID: a primary that vanishes."""
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: a stalled primary, its sockets open and silent (no push, no RST)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGCONT)  # a paused one could not act on SIGTERM
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def cli(self, *args: str, timeout: float = 10) -> str:
        out = subprocess.run(
            [shutil.which("redis-cli") or "redis-cli", "-p", str(self.port), *args],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        return out.stdout.decode()

    def info(self, section: str) -> dict[str, str]:
        text = self.cli("INFO", section) if section != "cluster" else self.cli("CLUSTER", "INFO")
        pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
        return {k.strip(): v.strip() for k, v in pairs}


@dataclass
class RedisClusterProcesses:
    """Six nodes; `start()` returns once the cluster is ok and every replica is synced."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="roomlogs-cluster-")))
    nodes: list[ClusterNodeProcess] = field(default_factory=list)

    @property
    def seeds(self) -> str:
        """REDIS_CLUSTER_NODES: every node (any one would do)."""
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", n.port) for n in self.nodes]

    def start(self) -> None:
        ports: list[int] = []
        while len(ports) < NODES:
            port = _free_port_pair()
            if port not in ports:
                ports.append(port)
        self.nodes = [ClusterNodeProcess(p, self.root / str(p)) for p in ports]
        for node in self.nodes:
            node.start()
        deadline = time.monotonic() + READY_TIMEOUT
        for node in self.nodes:
            self._until(deadline, lambda n=node: _pings(n.port), f"{node.port} answers PING")
        subprocess.run(
            [
                shutil.which("redis-cli") or "redis-cli",
                "--cluster", "create",
                *(f"127.0.0.1:{p}" for p in ports),
                "--cluster-replicas", "1",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=READY_TIMEOUT,
        )  # fmt: skip
        self.wait_ok()

    def wait_ok(self, timeout: float = READY_TIMEOUT) -> None:
        """Every live node says cluster_state:ok, every live replica's link is up, and
        every primary has a live replica if one was started for it (bounded)."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if not node.alive():
                continue
            self._until(
                deadline,
                lambda n=node: n.info("cluster").get("cluster_state") == "ok",
                f"{node.port} cluster_state:ok",
            )
        for node in self.nodes:
            if not node.alive():
                continue
            self._until(deadline, lambda n=node: _synced(n), f"{node.port} replica synced")

    def primaries(self) -> list[ClusterNodeProcess]:
        return [n for n in self.nodes if n.alive() and n.info("replication")["role"] == "master"]

    def replica_of(self, primary: ClusterNodeProcess) -> ClusterNodeProcess:
        for node in self.nodes:
            if not node.alive():
                continue
            info = node.info("replication")
            if info["role"] == "slave" and int(info["master_port"]) == primary.port:
                return node
        raise LookupError(f"no live replica of {primary.port}")

    def wait_replica(
        self, node: ClusterNodeProcess, primary: ClusterNodeProcess, timeout: float = READY_TIMEOUT
    ) -> None:
        """Until `node` is a replica of `primary` with its link up (synced), bounded."""

        def connected() -> bool:
            info = node.info("replication")
            return (
                info["role"] == "slave"
                and int(info["master_port"]) == primary.port
                and info.get("master_link_status") == "up"
            )

        self._until(time.monotonic() + timeout, connected, f"{node.port} replica of {primary.port}")

    def rooms_on_every_primary(self, per_primary: int = 1) -> list[str]:
        """Fresh room ids whose slots fall on each primary, `per_primary` of each."""
        ranges: dict[int, list[tuple[int, int]]] = {}
        for line in self.nodes[0].cli("CLUSTER", "NODES").splitlines():
            fields = line.split()
            if "master" in fields[2] and "fail" not in fields[2]:
                port = int(fields[1].split("@")[0].split(":")[1])
                parts = [f.partition("-")[::2] for f in fields[8:] if not f.startswith("[")]
                if parts:  # a primary that serves no slot (mid-failover) gets no room
                    ranges[port] = [(int(a), int(b or a)) for a, b in parts]
        assert ranges, "no primary serves a slot"
        chosen: dict[int, list[str]] = {port: [] for port in ranges}
        for i in range(1_000_000):  # ~16,384 slots: a few hundred tries fill each primary
            room = f"cl-{os.getpid()}-{next(_ROOMS)}-{i}"
            slot = key_slot(TAGGED.channel(room).encode())
            for port, spans in ranges.items():
                if len(chosen[port]) < per_primary and any(a <= slot <= b for a, b in spans):
                    chosen[port].append(room)
            if all(len(v) == per_primary for v in chosen.values()):
                return [room for rooms in chosen.values() for room in rooms]
        raise AssertionError(f"no rooms found for every primary: {ranges}")

    def node(self, port: int) -> ClusterNodeProcess:
        return next(n for n in self.nodes if n.port == port)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    @staticmethod
    def _until(deadline: float, check: object, what: str) -> None:
        assert callable(check)
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, subprocess.SubprocessError, KeyError):
                if check():
                    return
            time.sleep(0.05)
        raise RuntimeError(f"redis cluster: not {what} within the bound")


def _pings(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")


def _synced(node: ClusterNodeProcess) -> bool:
    info = node.info("replication")
    return info["role"] == "master" or info.get("master_link_status") == "up"


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterProcesses]:
    """A six-node cluster of the importing test module's own (a module imports this name to
    use it): one module's failovers and slot moves never reach another's."""
    processes = RedisClusterProcesses()
    try:
        processes.start()
        yield processes
    finally:
        processes.stop()
