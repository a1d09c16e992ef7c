"""A real Redis Sentinel deployment for one test: a primary, its replicas and three sentinels,
each a Debian redis-server on a free private port with its own directory, stopped by PID.

`start()` returns once it is in the stable state a failover test needs (RESEARCH-SCALEOUT.md
§5.3): every replica synced, and every sentinel knowing every replica and every other sentinel.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import redis

from tests.support.servers import free_port, redis_server_binary

SERVICE: Final = "mymaster"
DOWN_AFTER_MS: Final = 1000
FAILOVER_TIMEOUT_MS: Final = 3000
SETTLE: Final = 30.0  # seconds any wait of the harness may take


def wait_for(check: Callable[[], bool], what: str, timeout: float = SETTLE) -> None:
    """Until `check()` (state held by other processes, which announce no event to us)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError, OSError):
            if check():
                return
        time.sleep(0.05)
    raise TimeoutError(f"not within {timeout:.0f}s: {what}")


class Node:
    """One redis-server (a data node or a sentinel) from a config file it may rewrite."""

    def __init__(self, workdir: Path, name: str, lines: list[str], *, sentinel: bool) -> None:
        self.port = free_port()
        self.dir = workdir / name
        self.dir.mkdir(parents=True)
        self.conf = self.dir / "redis.conf"
        self.log = self.dir / "redis.log"
        head = [
            f"port {self.port}",
            "bind 127.0.0.1",
            "daemonize no",
            f"dir {self.dir}",
            f"logfile {self.log}",
        ]
        self.conf.write_text("\n".join(head + lines) + "\n")
        self.sentinel = sentinel
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [redis_server_binary(), str(self.conf), *(["--sentinel"] if self.sentinel else [])]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def answers() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.conf} exited: {self.log_tail()}")
            return bool(self.client().ping())

        wait_for(answers, f"{self.conf} answering PING", timeout=10)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=1)

    def kill(self) -> None:
        """SIGKILL by PID: the crash a failover is for."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: a stalled server, whose sockets stay open and say nothing."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # a paused one could not act on SIGTERM
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self) -> str:
        return self.log.read_text()[-2000:] if self.log.exists() else ""


class SentinelGroup:
    """A primary, `replicas` replicas and `sentinels` sentinels monitoring it as `mymaster`."""

    def __init__(self, workdir: Path, *, replicas: int = 1, sentinels: int = 3) -> None:
        data = ['save ""', "appendonly no", "repl-diskless-sync-delay 0"]
        self.primary = Node(workdir, "primary", data, sentinel=False)
        follow = [*data, f"replicaof 127.0.0.1 {self.primary.port}"]
        self.replicas = [
            Node(workdir, f"replica-{i}", follow, sentinel=False) for i in range(replicas)
        ]
        monitor = [
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2",
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {SERVICE} 1",
        ]
        self.sentinels = [
            Node(workdir, f"sentinel-{i}", monitor, sentinel=True) for i in range(sentinels)
        ]

    @property
    def data_nodes(self) -> list[Node]:
        return [self.primary, *self.replicas]

    @property
    def addresses(self) -> str:
        """REDIS_SENTINELS."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def node(self, port: int) -> Node:
        return next(n for n in self.data_nodes if n.port == port)

    def start(self) -> None:
        try:
            for node in [*self.data_nodes, *self.sentinels]:
                node.start()
            self.wait_stable()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for node in [*self.sentinels, *self.data_nodes]:
            node.stop()

    # -- what the sentinels say ------------------------------------------------------------

    @staticmethod
    def running(nodes: list[Node]) -> list[Node]:
        return [n for n in nodes if n.proc is not None and n.proc.poll() is None]

    def master_state(self, sentinel: Node) -> dict[str, Any]:
        state = sentinel.client().sentinel_master(SERVICE)
        assert isinstance(state, dict), state
        return state

    def primary_port(self) -> int:
        """The primary all sentinels name (waits until they agree)."""
        ports: set[int] = set()

        def agreed() -> bool:
            ports.clear()
            for s in self.running(self.sentinels):
                addr = s.client().sentinel_get_master_addr_by_name(SERVICE)
                assert isinstance(addr, (list, tuple)), addr
                ports.add(int(addr[1]))
            return len(ports) == 1

        wait_for(agreed, "the sentinels agreeing on the primary")
        return ports.pop()

    def wait_stable(self) -> None:
        """Every replica synced to the primary the sentinels name, no other node a primary,
        every sentinel knowing every replica and the other sentinels."""
        primary = self.primary_port()
        others = [n for n in self.data_nodes if n.port != primary and n.proc is not None]
        alive = [n for n in others if n.proc is not None and n.proc.poll() is None]

        def synced() -> bool:
            for node in alive:
                info = node.client().info("replication")
                if info.get("role") != "slave" or info.get("master_link_status") != "up":
                    return False
                if int(info.get("master_port", 0)) != primary:
                    return False
            return True

        def known() -> bool:
            for s in self.sentinels:
                state = self.master_state(s)
                if int(state["port"]) != primary or state["is_sdown"] or state["is_odown"]:
                    return False
                if int(state["num-other-sentinels"]) != len(self.sentinels) - 1:
                    return False
                healthy = [
                    r
                    for r in s.client().sentinel_slaves(SERVICE)
                    if not (r["is_sdown"] or r["is_odown"]) and r["master-link-status"] == "ok"
                ]
                if len(healthy) != len(alive):
                    return False
            return True

        wait_for(synced, "the replicas synced")
        wait_for(known, "the sentinels knowing the replicas and each other")

    def failover(self) -> None:
        """`SENTINEL FAILOVER` (on a running sentinel): the old primary stays a writable primary
        until Sentinel turns it into a replica (~10 s later)."""
        sentinel = self.running(self.sentinels)[0]
        sentinel.client().execute_command("SENTINEL", "FAILOVER", SERVICE)  # type: ignore[no-untyped-call]

    def wait_switched(self, old: int) -> int:
        """Until the sentinels agree on a primary other than `old`; its port."""
        port = 0

        def moved() -> bool:
            nonlocal port
            port = self.primary_port()
            return port != old

        wait_for(moved, f"a primary other than {old}")
        return port
