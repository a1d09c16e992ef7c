"""One batch of reads in flight at a time (broker/one_in_flight.py): calls made meanwhile are
held, then let go together (one loop turn: one batch), each gets its own answer or error, and
a held caller that gives up sends nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from service.broker.one_in_flight import OneInFlight


class _Runner:
    """Records the loop turn of each call; answers when the test opens `gate`."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, Any]] = []
        self.turn = 0
        self.gate = asyncio.Event()

    async def __call__(self, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        self.calls.append((self.turn, args[0]))
        await self.gate.wait()
        if args[0] == "bad":
            raise ValueError("refused")
        return ("reply", args[0])


async def _turns(runner: _Runner, count: int) -> None:
    for _ in range(count):
        runner.turn += 1
        await asyncio.sleep(0)


async def test_calls_made_while_one_is_in_flight_go_together_after_it() -> None:
    runner = _Runner()
    batched = OneInFlight(runner)
    first = asyncio.ensure_future(batched(keys=["k"], args=["first"]))
    await _turns(runner, 2)  # sent, and its batch closed
    assert [a for _, a in runner.calls] == ["first"]
    held = []
    for i in range(3):  # three loop turns, a call each, all while the first is in flight
        held.append(asyncio.ensure_future(batched(keys=["k"], args=[f"held-{i}"])))
        await _turns(runner, 1)
    assert [a for _, a in runner.calls] == ["first"]  # none sent yet
    runner.gate.set()
    assert await first == ("reply", "first")
    assert await asyncio.gather(*held) == [("reply", f"held-{i}") for i in range(3)]
    sent = runner.calls[1:]
    assert sorted(a for _, a in sent) == ["held-0", "held-1", "held-2"]
    assert len({turn for turn, _ in sent}) == 1  # let go in one loop turn: one batch


async def test_the_calls_of_the_loop_turn_that_starts_a_batch_join_it() -> None:
    runner = _Runner()
    batched = OneInFlight(runner)
    together = [asyncio.ensure_future(batched(keys=[], args=[f"c-{i}"])) for i in range(4)]
    await _turns(runner, 2)
    assert len(runner.calls) == 4
    assert len({turn for turn, _ in runner.calls}) == 1
    runner.gate.set()
    assert await asyncio.gather(*together) == [("reply", f"c-{i}") for i in range(4)]


async def test_a_call_with_nothing_in_flight_is_sent_at_once() -> None:
    runner = _Runner()
    runner.gate.set()
    batched = OneInFlight(runner)
    assert await batched(keys=[], args=["alone"]) == ("reply", "alone")
    assert await batched(keys=[], args=["again"]) == ("reply", "again")


async def test_each_call_keeps_its_own_error_and_a_held_caller_that_leaves_sends_nothing() -> None:
    runner = _Runner()
    batched = OneInFlight(runner)
    first = asyncio.ensure_future(batched(keys=[], args=["bad"]))
    await _turns(runner, 2)  # sent, and its batch closed
    leaving = asyncio.ensure_future(batched(keys=[], args=["leaving"]))
    staying = asyncio.ensure_future(batched(keys=[], args=["staying"]))
    await asyncio.sleep(0)
    leaving.cancel()
    runner.gate.set()
    with pytest.raises(ValueError, match="refused"):
        await first
    assert await staying == ("reply", "staying")
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert [a for _, a in runner.calls] == ["bad", "staying"]
