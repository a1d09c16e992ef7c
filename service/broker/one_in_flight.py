"""A batched read's calls, held while the previous batch is in flight: one batch at a time.

coalesce.py sends the calls of one loop turn together. A reconnect storm's resumes come a few
per turn (each room or position its own read), so at a thousand handshakes a second most
batches held one call or two, each paying redis-py's and the round trip's cost in full (a
pooled connection, a timeout, a send, a read). Here the calls made while a batch is in flight
wait for it and are let go together, in one loop turn, to make the next batch: the busier the
process, the larger the batches, and a call waits at most one round trip more (none when
nothing is in flight). Measured with one `EVALSHA` per call (bench.storm, 10,000 handshakes):
3,256 pipelines for 4,931 resumes, where one per loop turn sent about one each.

Why a later send is still each caller's own read: a call is only ever sent after it was made,
and the stream that makes it is registered before (shared_reads.py): what Redis stores after
the read ran reaches that stream live. Reads only: holding a write would change nothing of
its meaning either, but publishes have their own rules (coalesce.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from .script import ScriptRunner


class OneInFlight:
    """Called like the runner it wraps (`await runner(keys=..., args=...)`)."""

    __slots__ = ("_in_flight", "_open", "_runner", "_waiting")

    def __init__(self, runner: ScriptRunner) -> None:
        self._runner = runner
        self._in_flight = 0  # calls passed on and not answered yet
        # The batch in flight still takes calls: those of the loop turn that started it, which
        # the wrapped runner sends together (coalesce.py).
        self._open = False
        self._waiting: list[asyncio.Future[None]] = []  # one per held call

    async def __call__(self, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        loop = asyncio.get_running_loop()
        if self._in_flight and not self._open:
            turn = loop.create_future()
            self._waiting.append(turn)
            await turn  # a caller that gives up here has sent nothing
        if not self._in_flight:
            self._open = True
            # After the callbacks already due: the calls of this turn (and the held ones let
            # go together) are in before the batch closes.
            loop.call_soon(self._close)
        self._in_flight += 1
        try:
            return await self._runner(keys=keys, args=args)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._let_go()

    def _close(self) -> None:
        self._open = False

    def _let_go(self) -> None:
        """The held calls, all in the same loop turn: one batch."""
        waiting, self._waiting = self._waiting, []
        for turn in waiting:
            if not turn.done():
                turn.set_result(None)
