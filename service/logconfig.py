"""Process logging: text or one JSON object per line, and an access log that hides tokens."""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from .request_id import REQUEST_ID_KEY
from .settings import Settings

_TOKEN_IN_QUERY = re.compile(r"(?i)(access_token=)[^&#\s]*")
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({})))


def redact(text: str) -> str:
    """Hide the value of `access_token` in a URL (EventSource can only send it there)."""
    return _TOKEN_IN_QUERY.sub(r"\1[redacted]", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequests) for f in server.filters):
        server.addFilter(MalformedRequests())


class MalformedRequests(logging.Filter):
    """aiohttp logs every request its parser refuses (bad chunking, a header too large) as an
    ERROR with a traceback: anyone can fill the log that way. Such a request already gets a
    400 and an access line; its record becomes one INFO line with the parser's reason."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and record.levelno > logging.INFO:
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = f"{record.getMessage()}: refused by the HTTP parser: {exc.message}"
            record.args = None
            record.exc_info = record.exc_text = None
        return True


def _room(request: web.BaseRequest) -> str | None:
    """The route's room, for a request that got one: one aiohttp's parser refused (bad
    chunking, a header too large) is a `web.Request` with no route resolved."""
    if not isinstance(request, web.Request):
        return None
    try:
        room = request.match_info.get("roomId")
    except (AssertionError, AttributeError):  # no route resolved (its match_info is unset)
        return None
    return room if isinstance(room, str) else None


class AccessLogger(AbstractAccessLogger):
    """One line a request; the query's `access_token` is redacted and headers are never logged."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        path = redact(request.path_qs)
        self.logger.info(
            '%s "%s %s" %s %.1fms',
            request.remote,
            request.method,
            path,
            response.status,
            time * 1000,
            extra={
                "remote": request.remote,
                "method": request.method,
                "path": path,
                "status": response.status,
                "duration_ms": round(time * 1000, 3),
                "room": _room(request),
                "request_id": request.get(REQUEST_ID_KEY)
                if isinstance(request, web.Request)
                else None,
            },
        )
