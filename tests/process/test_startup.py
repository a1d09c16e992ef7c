"""Start-up that cannot listen: one line saying why, exit status 2, and no hang."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

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
