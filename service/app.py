"""The application factory (`create_app`), served by `roomlogs serve` and by `adev runserver`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from .auth import TokenVerifier, mint_token
from .broker import Broker, BrokerEvents, create_broker
from .cors import cors_middleware
from .delivery import Delivery
from .devsecret import dev_secret_path, load_dev_secret
from .endings import Ending, Endings
from .errors import error_middleware
from .handlers import viewer
from .handlers.history import history
from .handlers.openapi import openapi_handler
from .handlers.probes import healthz, metrics_view, readyz
from .handlers.publish import publish_logs
from .handlers.stream import stream_logs, stream_rooms
from .housekeeping import housekeeping_ctx
from .hub import Hub
from .metrics import Metrics
from .request_id import request_id_middleware
from .settings import Settings
from .state import STATE, AppState

log = logging.getLogger("service")

ROOM_LOGS = "/api/v1/rooms/{roomId}/logs"
ROOMS_LOGS = "/api/v1/logs"  # several rooms on one stream: ?rooms=a,b,c


def create_app(
    settings: Settings | None = None,
    *,
    make_broker: Callable[[Settings, BrokerEvents], Broker] = create_broker,
) -> web.Application:
    """Build the app; with no settings, read them from the environment (what `adev` does).

    `make_broker` is the seam for a broker of the caller's (the tests' recording broker).
    """
    settings = settings or Settings.from_env()
    metrics = Metrics()
    hub = Hub()
    delivery = Delivery(hub, metrics, settings.max_message_bytes)
    broker = make_broker(settings, delivery)
    delivery.connect(broker)  # the hub's room events now subscribe and unsubscribe the broker
    dev_secret = load_dev_secret() if settings.ephemeral_secret else None
    state = AppState(
        settings=settings,
        hub=hub,
        broker=broker,
        delivery=delivery,
        endings=Endings(hub, metrics, settings.retry_ms),
        verifier=TokenVerifier(settings, secret=dev_secret),
        metrics=metrics,
        dev_secret=dev_secret,
    )
    max_body = max(1 << 20, settings.max_message_bytes * 100 + 4096)
    app = web.Application(
        middlewares=[
            _close_while_draining,
            request_id_middleware,
            cors_middleware(settings.cors_origins),
            error_middleware(metrics),
        ],
        client_max_size=max_body,
    )
    app[STATE] = state
    app.router.add_get(ROOM_LOGS, stream_logs, allow_head=False)
    app.router.add_post(ROOM_LOGS, publish_logs)
    app.router.add_get(ROOMS_LOGS, stream_rooms, allow_head=False)
    app.router.add_get(ROOM_LOGS + "/history", history)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/openapi.json", openapi_handler(settings))
    viewer.add_routes(app)
    app.cleanup_ctx.append(_broker_ctx)
    app.cleanup_ctx.append(housekeeping_ctx)
    app.on_startup.append(_announce)
    app.on_shutdown.append(_on_shutdown)
    return app


@web.middleware
async def _close_while_draining(request: web.Request, handler: Handler) -> web.StreamResponse:
    """While draining, answer `Connection: close`: the load balancer's kept-alive connections
    are retired during the drain rather than reset under a request at exit."""
    resp = await handler(request)
    if request.app[STATE].draining and not resp.prepared:
        resp.force_close()
    return resp


async def _broker_ctx(app: web.Application) -> AsyncIterator[None]:
    broker = app[STATE].broker
    await broker.start()
    yield
    await broker.close()


async def _announce(app: web.Application) -> None:
    state = app[STATE]
    if state.dev_secret is not None:
        print_dev_token(state.settings, state.dev_secret)


def print_dev_token(settings: Settings, secret: str) -> None:
    """Development only (no key configured): the one place a token is ever printed."""
    token = mint_token(
        secret, rooms=["*"], publish=["*"], ttl=86400, sub="dev",
        algorithm="HS256", issuer=settings.jwt_issuer, audience=settings.jwt_audience,
    )  # fmt: skip
    base = f"http://localhost:{settings.port}"
    print(
        "roomlogs: no JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL set: using the development "
        f"secret kept in {dev_secret_path()}, listening on {settings.listen_host} only unless "
        "LISTEN_HOST says otherwise.\n"
        "  a development token (all rooms, publish anywhere, 24 h):\n"
        f"  export ROOMLOGS_TOKEN={token}\n"
        f'  stream:  curl -N -H "Authorization: Bearer $ROOMLOGS_TOKEN" '
        f"{base}/api/v1/rooms/demo/logs\n"
        f'  publish: curl -H "Authorization: Bearer $ROOMLOGS_TOKEN" '
        f'-d \'{{"agentType":"story","level":"info","message":"hello"}}\' '
        f"{base}/api/v1/rooms/demo/logs\n"
        f"  viewer:  {base}/?room=demo&access_token={token}",
        flush=True,
    )


async def _on_shutdown(app: web.Application) -> None:
    state = app[STATE]
    state.draining = True
    state.metrics.worker_ready.set(0)
    state.hub.close_all(Ending.SHUTDOWN)
