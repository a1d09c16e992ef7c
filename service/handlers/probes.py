"""Liveness, readiness and metrics for the orchestrator and Prometheus."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..housekeeping import refresh_metrics
from ..state import STATE


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.draining:
        return web.json_response({"status": "unavailable", "reason": "draining"}, status=503)
    if not state.broker.ready:
        return web.json_response(
            {"status": "unavailable", "reason": f"broker: {state.broker.reason}"}, status=503
        )
    return web.json_response({"status": "ready"})


async def metrics_view(request: web.Request) -> web.Response:
    state = request.app[STATE]
    refresh_metrics(state)
    registry = state.metrics.registry
    resp = web.Response(body=generate_latest(registry))
    resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return resp
