"""The tutorial pattern: sse-starlette under uvicorn, one Redis subscription per stream.

    REDIS_URL=redis://127.0.0.1:6379/0 uvicorn bench.systems.tutorial_server:app --port 8098

This is how the pattern is usually written (and how the NestJS original worked): each SSE
request opens its own redis-py pub/sub connection, `SUBSCRIBE`s to its room's channel, and
yields every message as an event. The only addition is a first `connected` event once the
subscription is live, so the load generator knows when publishing will reach the stream.
Redis then does the fan-out (one socket write per subscriber per message), and the Python
process reads, decodes and re-encodes every message once per stream.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from sse_starlette.sse import EventSourceResponse  # type: ignore[import-not-found, unused-ignore]
from starlette.applications import Starlette  # type: ignore[import-not-found, unused-ignore]
from starlette.requests import Request  # type: ignore[import-not-found, unused-ignore]
from starlette.routing import Route  # type: ignore[import-not-found, unused-ignore]

from service.broker.keys import PLAIN

# Each pub/sub holds a pooled connection for the stream's lifetime, and redis-py's asyncio pool
# allows 100 connections unless told otherwise: the 101st stream would fail. Raised, as anyone
# running this pattern for more than a hundred viewers has to.
redis = aioredis.Redis.from_url(
    os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), max_connections=1_000_000
)


async def room_logs(request: Request) -> EventSourceResponse:
    room = request.path_params["room"]

    async def events() -> AsyncIterator[dict[str, str]]:
        pubsub = redis.pubsub()
        await pubsub.subscribe(PLAIN.channel(room))
        try:
            yield {"event": "connected", "data": '{"ok":true}'}
            async for message in pubsub.listen():
                if message["type"] == "message":
                    yield {"event": "log", "data": message["data"].decode()}
        finally:
            await pubsub.unsubscribe()
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    return EventSourceResponse(events())


app = Starlette(routes=[Route("/api/v1/rooms/{room}/logs", room_logs)])
