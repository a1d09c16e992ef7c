"""The micro-benchmarks still run, and the hub's really writes to every subscriber."""

from __future__ import annotations

import pytest

from bench.micro.__main__ import main
from bench.micro.hub import hub_with, messages


async def test_a_hub_turn_writes_once_to_every_subscriber() -> None:
    hub, transports = hub_with(["a", "b"], 3)
    for msg in [*messages("a", 2), *messages("b", 1)]:
        hub.dispatch(msg)
    hub.flush()
    assert [t.writes for t in transports] == [1] * 6  # the turn's frames joined per room
    assert transports[0].written > transports[3].written > 0


def test_every_micro_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick", "--repeat", "1", "--budget", "0.0005"]) == 0
    out = capsys.readouterr().out
    assert "| hub 1 room x 1,000, 1 message a turn |" in out
    assert "| minimal server's frame() |" in out
