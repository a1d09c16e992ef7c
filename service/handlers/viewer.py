"""`GET /`: the built-in log viewer (static HTML, CSS and JavaScript modules; no build step).

The files are served with `Cache-Control: no-cache` (revalidated by ETag, so a deploy is seen at
once) and `X-Content-Type-Options: nosniff`; the page itself with a Content-Security-Policy that
allows only its own scripts and styles, so even a bug that put log text into markup could not
run it. `connect-src` stays open: the page may stream from another gateway (`?server=`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aiohttp import web

STATIC: Final = Path(__file__).resolve().parent.parent / "static"

CSP: Final = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self' http: https:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ]
)
_HEADERS: Final = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}


def _files() -> dict[str, Path]:
    """The servable files, by name: a fixed set read once, so no request builds a path."""
    return {p.name: p for p in STATIC.iterdir() if p.is_file() and p.suffix in _TYPES}


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(
        STATIC / "index.html",
        headers={**_HEADERS, "Content-Type": _TYPES[".html"], "Content-Security-Policy": CSP},
    )


def add_routes(app: web.Application) -> None:
    files = _files()

    async def static(request: web.Request) -> web.FileResponse:
        path = files.get(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={**_HEADERS, "Content-Type": _TYPES[path.suffix]})

    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
