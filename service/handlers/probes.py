"""Liveness, readiness and metrics for the orchestrator and Prometheus."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..housekeeping import refresh_metrics
from ..metrics import workers_ready
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
    workers = state.settings.workers
    counts = workers_ready() if workers > 1 else None
    if counts is not None and counts[1] < workers:
        # DESIGN.md: the container's readiness, not this worker's. A load balancer that saw
        # 200 must never reach a worker that would refuse the stream.
        reported, ready = counts
        reason = f"workers: {ready} of {workers} ready ({workers - reported} not started yet)"
        return web.json_response({"status": "unavailable", "reason": reason}, status=503)
    return web.json_response({"status": "ready"})


async def metrics_view(request: web.Request) -> web.Response:
    state = request.app[STATE]
    refresh_metrics(state)
    registry = state.metrics.registry
    resp = web.Response(body=generate_latest(registry))
    resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return resp
