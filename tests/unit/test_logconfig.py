"""The formatters' cached timestamps (made once a second) read as the uncached ones did."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import orjson

from service.logconfig import JsonFormatter, TextFormatter

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def _records() -> list[logging.LogRecord]:
    """Records 0.25 s apart, over several seconds, each with the `msecs` logging gives it."""
    out = []
    for i in range(20):
        record = logging.makeLogRecord({"name": "t", "levelname": "INFO", "msg": f"m{i}"})
        record.created = 1_764_780_000.0 + i * 0.25 + 0.0004
        record.msecs = int((record.created - int(record.created)) * 1000) + 0.0
        out.append(record)
    return out


def test_the_text_formatter_writes_what_logging_formatter_writes() -> None:
    cached, plain = TextFormatter(FORMAT), logging.Formatter(FORMAT)
    for record in _records():
        assert cached.format(record) == plain.format(record)


def test_the_json_time_is_the_records_utc_time_to_the_millisecond() -> None:
    formatter = JsonFormatter()
    for record in _records():
        entry = orjson.loads(formatter.format(record))
        expected = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        assert entry["time"] == expected
        assert entry["message"] == record.msg
