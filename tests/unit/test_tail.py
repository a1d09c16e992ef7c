"""tail: how `roomlogs tail` prints a log (the command itself runs in
tests/process/test_publishers.py)."""

from __future__ import annotations

from service.tail import format_log


def test_tail_colours_levels_only_on_request() -> None:
    log = {"timestamp": "t", "level": "error", "agentType": "code", "message": "boom"}
    assert format_log(log, colour=False) == "t ERROR   [code] boom"
    coloured = format_log(log, colour=True)
    assert coloured.startswith("\033[31;1m")
    assert coloured.endswith("\033[0m")
    assert "boom" in coloured
