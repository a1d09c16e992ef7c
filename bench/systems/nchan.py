"""nchan: Debian's nginx with `libnginx-mod-nchan`, one worker, its memory store.

Logs are published to its HTTP publisher location (nchan does not read plain Redis channels:
its Redis mode has its own key layout and scripts), so its CPU also covers parsing one small
POST per log, which is per log, not per delivery.

Its worker can crash and be respawned by the master without the process tree changing:
`worker_crashes` reads them from nginx's error log, so a case can say so instead of only
seeing connections reset. Debian's nchan 1.3.6 aborts on a `Last-Event-ID` whose channel no
longer holds any message (`spool.c` `MSG_INVALID` assertion, nchan issues #534/#676, fixed
by upstream commit 7765ec1, in 1.3.7): every respawned worker then crashes again on the next
such resume.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from .._common import HOST
from ..publishers import Feed, NchanFeed
from ..reader import Framing
from .base import System

NCHAN_MODULE: Final = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")


class Nchan(System):
    key = "nchan"
    label = "nchan (nginx), 1 worker"
    # nchan says `: hi` once the subscriber is registered on the channel.
    framing = Framing.lines(b"\n", b": hi\n")

    def __init__(
        self,
        redis_url: str,
        workdir: Path,
        cpus: str | None,
        streams: int,
        message_timeout_s: int = 60,
    ) -> None:
        super().__init__(redis_url, workdir, cpus, streams)
        # How long a published message stays in the buffer (what a resumed stream replays):
        # 60 s bounds the memory of the rate steps; the storm holds them for its whole run.
        self.message_timeout_s = message_timeout_s

    @property
    def uses_redis(self) -> bool:
        return False

    @property
    def error_log(self) -> Path:
        return self.workdir / f"nginx-{self.port}" / "logs" / "error.log"

    def worker_crashes(self) -> tuple[int, str | None]:
        """How many times a worker died on a signal so far, and the first assertion seen."""
        try:
            text = self.error_log.read_text(errors="replace")
        except OSError:
            return 0, None
        return crashes_in(text)

    def feed(self, rooms: Sequence[str]) -> Feed:
        return NchanFeed(self.port, rooms)

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
                        nchan_message_timeout {self.message_timeout_s}s;
                    }}
                    location = /healthz {{
                        default_type application/json;
                        return 200 '{{"status":"ok"}}';
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


CRASH: Final = re.compile(r"worker process \d+ exited on signal (\d+)")
ASSERTION: Final = re.compile(r"([\w/.]+\.c:\d+: \w+: Assertion .*? failed\.)")


def crashes_in(error_log: str) -> tuple[int, str | None]:
    """The worker deaths in an nginx error log, and the first assertion that caused one."""
    assertion = ASSERTION.search(error_log)
    return len(CRASH.findall(error_log)), assertion.group(1) if assertion else None


def without_missing_nchan(systems: list[str]) -> list[str]:
    """`systems` without nchan when it cannot be had (said on stderr), as each command runs."""
    if "nchan" not in systems:
        return systems
    why = ensure_nchan()
    if why is None:
        return systems
    print(f"nchan skipped: {why}", file=sys.stderr, flush=True)
    return [k for k in systems if k != "nchan"]


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
