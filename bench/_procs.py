"""Processes and /proc: free ports, taskset pinning, CPU and RSS of process trees, the busy
share of every core, sockets per process, the open-file limit, stopping a process."""

from __future__ import annotations

import contextlib
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from ._common import HOST, SetupError

CLK_TCK: Final = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def pinned(cpus: str | None, argv: list[str]) -> list[str]:
    """`argv` run on `cpus` ("0" or "0,1"): `taskset -c CPUS argv`, so that threads started
    early are pinned too. None: unpinned."""
    if cpus is None:
        return argv
    taskset = shutil.which("taskset")
    if taskset is None:
        raise SetupError("taskset is missing (util-linux); run with --no-pin")
    return [taskset, "-c", cpus, *argv]


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/PID/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_start_ticks(pid: int) -> int | None:
    """When a process started (clock ticks since boot): tells it from a later one with its pid.
    None when it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else int(fields[19])


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


def busy_shares(
    before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]
) -> dict[int, float]:
    """Every core's busy share between two `core_times()`."""
    out: dict[int, float] = {}
    for cpu, (busy, total) in after.items():
        b0, t0 = before.get(cpu, (busy, total))
        out[cpu] = (busy - b0) / max(total - t0, 1)
    return out


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


def is_spawned_worker(pid: int) -> bool:
    """A multiprocessing `spawn` child (a worker), not its resource tracker."""
    with contextlib.suppress(OSError):
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    return False


def established_inodes(port: int) -> set[int]:
    """Socket inodes of the ESTABLISHED TCP connections whose local port is `port` (the
    server's side of each client connection), from /proc/net/tcp and tcp6."""
    return {int(fields[9]) for fields in _established(port)}


def established_peers(port: int) -> set[int]:
    """The peer ports of the ESTABLISHED TCP connections whose local port is `port`: which
    clients a server still holds, told apart from its other connections (nchan's publisher
    keeps one open to the same port), from /proc/net/tcp and tcp6."""
    return {int(fields[2].rsplit(":", 1)[1], 16) for fields in _established(port)}


def _established(port: int) -> list[list[str]]:
    """The /proc/net/tcp(6) rows of the ESTABLISHED connections whose local port is `port`."""
    rows: list[list[str]] = []
    for name in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) < 10 or fields[3] != "01":  # 01: ESTABLISHED
                    continue
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    rows.append(fields)
    return rows


def owners_of_ports(pids: Sequence[int], ports: set[int]) -> dict[int, int]:
    """Local TCP port -> the process among `pids` holding that socket, for the ESTABLISHED
    connections of `ports` (a Redis client's port in `CLIENT LIST` names its process)."""
    by_inode: dict[int, int] = {}
    for name in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) < 10 or fields[3] != "01":
                    continue
                port = int(fields[1].rsplit(":", 1)[1], 16)
                if port in ports:
                    by_inode[int(fields[9])] = port
    out: dict[int, int] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError, ValueError):
                    target = os.readlink(fd)
                    if target.startswith("socket:[") and int(target[8:-1]) in by_inode:
                        out[by_inode[int(target[8:-1])]] = pid
    return out


def tcp_bytes_sent(port: int) -> dict[int, int] | None:
    """By peer port, the bytes each ESTABLISHED connection of local `port` has sent (the
    kernel's tcp_info `bytes_sent`, read with `ss`): what a server wrote to each of its
    clients, to the byte. None when `ss` (iproute2) is missing."""
    ss = shutil.which("ss")
    if ss is None:
        return None
    text = subprocess.run(
        [ss, "-tinHO", "state", "established", f"( sport = :{port} )"],
        capture_output=True, text=True, timeout=10, check=False,
    ).stdout  # fmt: skip
    return bytes_sent_of(text)


def bytes_sent_of(text: str) -> dict[int, int]:
    """`tcp_bytes_sent`'s reading of `ss -tinHO state established` lines."""
    out: dict[int, int] = {}
    for line in text.splitlines():
        fields = line.split()  # Recv-Q Send-Q local peer, then tcp_info
        if len(fields) < 4 or ":" not in fields[3]:
            continue
        found = re.search(r"\bbytes_sent:(\d+)", line)
        out[int(fields[3].rsplit(":", 1)[1])] = int(found.group(1)) if found else 0
    return out


def socket_count(pid: int, inodes: set[int]) -> int:
    """How many of `inodes` process `pid` holds open."""
    count = 0
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:[") and int(target[8:-1]) in inodes:
                    count += 1
    return count


def pin_load_generator(server_cpu: int | None, client_cpu: int) -> str | None:
    """Pin this process (the load generator) to `client_cpu`, apart from the server's core;
    what is wrong with the choice, or None (also when pinning is off: `server_cpu` None)."""
    if server_cpu is None:
        return None
    cpus = os.sched_getaffinity(0)
    if not {server_cpu, client_cpu} <= cpus or server_cpu == client_cpu:
        return f"need two distinct cores among {sorted(cpus)}; or use --no-pin"
    os.sched_setaffinity(0, {client_cpu})
    return None


def raise_nofile(needed: int) -> int:
    """Raise RLIMIT_NOFILE towards `needed` (children inherit it): the soft limit up to the
    hard one, and as root the hard one too. Returns the soft limit reached, which the caller
    compares with what it needs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    if hard == resource.RLIM_INFINITY or hard >= needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        return needed
    try:  # root may raise the hard limit too
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
        return needed
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard


def stop_leftovers(started: dict[int, int | None], grace: float = 2.0) -> list[int]:
    """Processes of a stopped tree (`started`: pid → `proc_start_ticks`) that are still running
    after `grace` seconds: SIGTERM, then SIGKILL after 3 s. Returns their pids."""

    def running() -> list[int]:
        return [p for p, t in started.items() if t is not None and proc_start_ticks(p) == t]

    deadline = time.monotonic() + grace
    while (left := running()) and time.monotonic() < deadline:
        time.sleep(0.1)
    for sig, wait_s in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 1.0)):
        for pid in running():
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while running() and time.monotonic() < deadline:
            time.sleep(0.1)
    return left


def stop_process(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
