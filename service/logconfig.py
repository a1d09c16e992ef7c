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
                "room": getattr(request, "match_info", {}).get("roomId"),
                "request_id": request.get(REQUEST_ID_KEY)
                if isinstance(request, web.Request)
                else None,
            },
        )
