"""Running the app the production way: handler cancellation on, tokens out of the access log."""

from __future__ import annotations

import logging

from aiohttp import web

from .app import create_app
from .logconfig import AccessLogger, configure_logging
from .settings import Settings

log = logging.getLogger("service")


def serve(settings: Settings) -> None:
    configure_logging(settings)
    try:
        import uvloop
    except ImportError:  # optional: the `speed` extra
        uvloop = None  # type: ignore[assignment]
    app = create_app(settings)
    log.info(
        "roomlogs listening on http://%s:%d (broker: %s)",
        settings.listen_host,
        settings.port,
        "redis" if settings.redis_url else "memory",
    )
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
