"""`X-Request-Id`: the load balancer's id when it is sane, else a new one; on every answer."""

from __future__ import annotations

import os
import re

from aiohttp import web
from aiohttp.typedefs import Handler

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
REQUEST_ID_KEY: web.RequestKey[str] = web.RequestKey("request_id", str)


def request_id(request: web.Request) -> str:
    """The caller's X-Request-Id when it is sane (from the load balancer), else a new one."""
    try:
        # Set by the middleware: `request.get` would raise and catch a KeyError first.
        return request[REQUEST_ID_KEY]
    except KeyError:
        rid = request[REQUEST_ID_KEY] = _given_or_new(request)
        return rid


def _given_or_new(request: web.Request) -> str:
    given = request.headers.get("X-Request-Id", "")
    # 32 random hex digits, as uuid4().hex but without building a UUID (half the time).
    return given if given and _REQUEST_ID.fullmatch(given) else os.urandom(16).hex()


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = request[REQUEST_ID_KEY] = _given_or_new(request)
    resp = await handler(request)
    if not resp.prepared:
        resp.headers["X-Request-Id"] = rid
    return resp
