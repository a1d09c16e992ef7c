"""Start-up that cannot listen: one line saying why, exit status 2, and no hang."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time

import pytest

from service.settings import FIELDS
from tests.support.factories import SECRET
from tests.support.paths import ROOT
from tests.support.servers import RedisServer, free_port


@pytest.mark.parametrize("broker", ["memory", "redis"])
def test_a_busy_port_exits_2_saying_the_address_is_in_use(
    broker: str, redis_server: RedisServer
) -> None:
    """With Redis the reader task used to swallow its cancellation and the process hung."""
    port = free_port()
    names = {spec.env for spec in FIELDS}
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.update(JWT_SECRET=SECRET, LISTEN_HOST="127.0.0.1", PORT=str(port))
    if broker == "redis":
        env["REDIS_URL"] = redis_server.url
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = subprocess.run(
            [sys.executable, "-m", "service", "serve"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if not line[:4].isdigit()]
    assert lines == [f"roomlogs: cannot listen on 127.0.0.1:{port}: address already in use "
                     "(LISTEN_HOST, PORT)"]  # fmt: skip


def test_serve_raises_its_soft_open_files_limit_to_the_hard_one() -> None:
    """A container's soft limit of 1024 would cap a worker near 1,000 streams."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.fail(f"the premise: a hard limit above 256 (it is {hard})")
    names = {spec.env for spec in FIELDS}
    env = {k: v for k, v in os.environ.items() if k not in names}
    port = free_port()
    env.update(JWT_SECRET=SECRET, LISTEN_HOST="127.0.0.1", PORT=str(port))

    def low() -> None:  # the child starts as a container would
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "serve"],
        cwd=ROOT,
        env=env,
        preexec_fn=low,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not _listening(port):  # it raises the limit before it listens
            assert proc.poll() is None, "serve exited"
            assert time.monotonic() < deadline, "serve did not listen within 20 s"
            time.sleep(0.05)  # no event crosses the process boundary
        with open(f"/proc/{proc.pid}/limits") as f:
            line = next(x for x in f if x.startswith("Max open files"))
        assert int(line.split()[3]) == (hard if hard != resource.RLIM_INFINITY else 1 << 20)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0
