"""Process logging: text or one JSON object per line, and an access log that hides tokens."""

from __future__ import annotations

import logging
import re
import sys
import time
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
    _second = -1
    _stamp = ""  # the current second, as `isoformat` writes it up to the milliseconds

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # once a second, not once a line (an access line each)
            self._stamp = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        entry: dict[str, Any] = {
            "time": f"{self._stamp}.{int(record.msecs):03d}+00:00",
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
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    # Neither format shows a record's thread, process or process name, which every record
    # (an access line per request) otherwise looks up.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequests) for f in server.filters):
        server.addFilter(MalformedRequests())


class TextFormatter(logging.Formatter):
    """`logging.Formatter`'s text, its `asctime` made once a second rather than once a line
    (strftime was a tenth of an access line's cost)."""

    _second = -1
    _stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        msec_format = self.default_msec_format
        if datefmt is not None or msec_format is None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = second
        return msec_format % (self._stamp, record.msecs)


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

    @property
    def enabled(self) -> bool:
        # aiohttp asks once per connection: below INFO (LOG_LEVEL=WARNING) its requests skip
        # the access log altogether, the clock read for their duration included.
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        path = request.path_qs
        if request.query_string:
            path = redact(path)
        remote, method, status, ms = request.remote, request.method, response.status, time * 1000
        # The record made here rather than by `logger.info`: that one walks the stack for the
        # caller's file and line, which no format shows (and aiohttp's would be named).
        record = logger.makeRecord(
            logger.name,
            logging.INFO,
            "(access log)",
            0,
            '%s "%s %s" %s %.1fms',
            (remote, method, path, status, ms),
            None,
            extra={
                "remote": remote,
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": round(ms, 3),
                "room": _room(request),
                "request_id": request.get(REQUEST_ID_KEY)
                if isinstance(request, web.Request)
                else None,
            },
        )
        logger.handle(record)
