"""CORS for browsers on other origins (`CORS_ORIGINS`), with credentials for cookie auth.

Streams add the headers before they start (a streamed response cannot be changed after); every
other answer, errors included, gets them from the middleware, so a page on another origin can
read why it was refused.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

ALLOW_HEADERS = "Authorization, Content-Type, Last-Event-ID, Idempotency-Key"
ALLOW_METHODS = "GET, POST, OPTIONS"


def cors_headers(request: web.Request, origins: tuple[str, ...]) -> dict[str, str]:
    origin = request.headers.get("Origin")
    if not origin or origin not in origins:
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }


def cors_middleware(origins: tuple[str, ...]) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            headers = cors_headers(request, origins)
            if not headers:
                return web.Response(status=204)
            headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
            headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
            headers["Access-Control-Max-Age"] = "600"
            return web.Response(status=204, headers=headers)
        resp = await handler(request)
        if not resp.prepared:
            resp.headers.update(cors_headers(request, origins))
        return resp

    return middleware
