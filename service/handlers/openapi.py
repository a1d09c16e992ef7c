"""`GET /openapi.json`: the API's OpenAPI 3.1 document (`service/openapi.py`)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from ..openapi import encoded
from ..settings import Settings


def openapi_handler(settings: Settings) -> Handler:
    """The document is encoded once per app: it depends only on the settings."""
    body = encoded(settings)

    async def openapi_json(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type="application/json")

    return openapi_json
