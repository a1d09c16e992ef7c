"""Running the app the production way: handler cancellation on, tokens out of the access log."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from .app import create_app
from .logconfig import AccessLogger, configure_logging
from .settings import Settings, SettingsError

log = logging.getLogger("service")


def serve(settings: Settings) -> None:
    configure_logging(settings)
    try:
        import uvloop
    except ImportError:  # optional: the `speed` extra
        uvloop = None  # type: ignore[assignment]
    app = create_app(settings)
    log.info(
        "roomlogs starting on http://%s:%d (broker: %s)",
        settings.listen_host,
        settings.port,
        "redis" if settings.redis_url else "memory",
    )
    try:
        _run(app, settings, uvloop)
    except OSError as exc:
        raise SettingsError(
            "PORT", f"cannot listen on {settings.listen_host}:{settings.port}: {exc.strerror}"
        ) from None


def _run(app: web.Application, settings: Settings, uvloop: Any) -> None:
    web.run_app(
        app,
        host=settings.listen_host,
        port=settings.port,
        # aiohttp does not cancel a handler whose client left unless asked to.
        handler_cancellation=True,
        access_log_class=AccessLogger,
        shutdown_timeout=settings.shutdown_timeout,
        print=None,
        loop=uvloop.new_event_loop() if uvloop is not None else None,
    )
