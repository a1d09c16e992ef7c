"""Running the app the production way: handler cancellation on, tokens out of the access log,
graceful drain on SIGTERM, and `WORKERS` processes sharing the port.

Workers use SO_REUSEPORT (each process binds the port itself and the kernel spreads new
connections): no extra dependency, no master in the data path, and each worker keeps its own
Redis subscription. gunicorn's aiohttp worker would add a dependency and its own signal and
timeout semantics for no gain here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import multiprocessing
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import Any

from aiohttp import web

from . import tcp_options
from ._head_timeout import HeadTimeoutRunner
from .app import create_app, print_dev_token
from .auth import SHORT_HS_KEY
from .devsecret import load_dev_secret
from .drain import drain
from .logconfig import AccessLogger, configure_logging
from .settings import Settings, SettingsError
from .state import STATE

log = logging.getLogger("service")

EXIT_BAD_CONFIG = 2


class StartupError(Exception):
    """The service cannot start as configured (the port is taken, say); `str()` is the one
    line printed before exiting with status 2."""


def _reason(exc: OSError) -> str:
    """`address already in use`, not asyncio's "error while attempting to bind on …" wrapper."""
    if exc.errno is not None:
        return os.strerror(exc.errno).lower()
    return str(exc)


def serve(settings: Settings) -> None:
    configure_logging(settings)
    _raise_open_files()
    if settings.jwt_secret and len(settings.jwt_secret.encode()) < SHORT_HS_KEY:
        log.warning(
            "JWT_SECRET is %d bytes: HS256 wants at least %d (RFC 7518 section 3.2)",
            len(settings.jwt_secret.encode()),
            SHORT_HS_KEY,
        )
    if settings.workers > 1:
        sys.exit(_supervise(settings))
    _serve_one(settings, reuse_port=False)


# A soft limit to ask for when the hard one is unlimited.
_OPEN_FILES_WANTED = 1 << 20


def _raise_open_files() -> None:
    """Every stream is a socket: take the hard open-files limit as the soft one, as Go's
    runtime does. Containers commonly start with a soft 1024 (containerd 2), which would cap a
    worker near 1,000 streams whatever MAX_CONNECTIONS says."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = _OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY else hard
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
    except (ValueError, OSError) as exc:
        log.warning("could not raise the open-files limit: %s", exc)
        return
    log.info("open files limit: %d", soft)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # optional: the `speed` extra
        return None
    return uvloop.new_event_loop


def _serve_one(settings: Settings, *, reuse_port: bool) -> None:
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_main(settings, reuse_port))


async def _main(settings: Settings, reuse_port: bool) -> None:
    app = create_app(settings)
    metrics = app[STATE].metrics
    runner = HeadTimeoutRunner(
        app,
        head_timeout=settings.request_head_timeout,
        on_timeout=metrics.request_head_timeouts.inc,
        # aiohttp does not cancel a handler whose client left unless asked to.
        handler_cancellation=True,
        access_log_class=AccessLogger,
        shutdown_timeout=settings.shutdown_timeout,
        # An idle kept-alive connection: 75 s by default (`run_app`'s value; `AppRunner` alone
        # keeps one 3630 s), above nginx's 60 s so that nginx is the side that closes it.
        keepalive_timeout=settings.keepalive_timeout,
    )
    await runner.setup()
    # A deep accept queue: after a gateway dies, its browsers all reconnect to the others at
    # once, and aiohttp's default of 128 made the kernel drop the rest into retransmit waits
    # (bench.storm, all 10,000 at once: ~300 handshakes/s with the core 19 % busy; 4096: ~1,600).
    site = web.TCPSite(
        runner, settings.listen_host, settings.port, reuse_port=reuse_port, backlog=4096
    )
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise StartupError(
            f"cannot listen on {settings.listen_host}:{settings.port}: "
            f"{_reason(exc)} (LISTEN_HOST, PORT)"
        ) from None
    # Inherited by every accepted socket: no setsockopt per stream (tcp_options.py).
    if tcp_options.set_on_listeners(site):
        app[STATE].listeners_timed = True
        runner.keepalive_inherited()
    log.info(
        "roomlogs listening on http://%s:%d (broker: %s, pid %d)",
        settings.listen_host,
        settings.port,
        settings.topology,
        os.getpid(),
    )
    # Long-lived start-up objects leave the collector's view, and young collections run less
    # often: profiles showed the cyclic GC taking a fifth of the CPU at 5,000 streams.
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    started = time.monotonic()
    await drain(app[STATE])
    await runner.cleanup()
    log.info("roomlogs stopped after draining for %.2fs", time.monotonic() - started)


# -- workers --------------------------------------------------------------------------------


def _worker(settings: Settings) -> None:
    configure_logging(settings)
    try:
        _serve_one(settings, reuse_port=True)
    except (SettingsError, StartupError) as exc:
        print(f"roomlogs: {exc}", file=sys.stderr)
        sys.exit(EXIT_BAD_CONFIG)


def _supervise(settings: Settings) -> int:
    """Start the workers, restart one that crashes, forward SIGTERM and SIGINT, wait for all."""
    from prometheus_client import multiprocess

    metrics_dir = tempfile.mkdtemp(prefix="roomlogs-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # inherited by the spawned workers
    if settings.ephemeral_secret:
        # One secret for all workers, or a token from one would fail on the others; kept
        # across restarts (devsecret.py).
        secret = load_dev_secret()
        settings = dataclasses.replace(settings, jwt_secret=secret)
        print_dev_token(settings, secret)
    ctx = multiprocessing.get_context("spawn")
    stopping = False
    workers: dict[int, Any] = {}

    def start(slot: int) -> None:
        proc = ctx.Process(target=_worker, args=(settings,), name=f"roomlogs-worker-{slot}")
        proc.start()
        workers[slot] = proc

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for proc in workers.values():
            if proc.is_alive() and proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for slot in range(settings.workers):
        start(slot)
    log.info("started %d workers on port %d", settings.workers, settings.port)
    failed = False
    try:
        while workers:
            wait([p.sentinel for p in workers.values()], timeout=1.0)
            for slot, proc in list(workers.items()):
                if proc.is_alive():
                    continue
                proc.join()
                multiprocess.mark_process_dead(proc.pid)  # type: ignore[no-untyped-call]
                del workers[slot]
                if proc.exitcode == EXIT_BAD_CONFIG:
                    failed = True
                    stopping = True
                    forward(signal.SIGTERM, None)
                elif not stopping:
                    log.error("worker %d exited with %s; restarting it", slot, proc.exitcode)
                    start(slot)
                elif proc.exitcode != 0:
                    failed = True
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return EXIT_BAD_CONFIG if failed else 0
