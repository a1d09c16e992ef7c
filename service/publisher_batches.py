"""The `Publisher`'s batching: what is emitted to a room while its previous send is on the way
goes in its next send.

One send per room at a time, in the order the logs were emitted, so a room's order is kept
over HTTP as over Redis, and an answer is each emit's own ids. A send costs the publisher and
the gateway about the same for 1 log as for 50 (a round trip, a script call), so a busy
producer of single logs gets the throughput of batches without calling `emit_many` itself, and
a lone `await emit()` is sent at once (no timer unless `linger` asks for one).

Memory is bounded: at most `max_pending` logs are queued or on the way; past that, `emit`
waits for room (back-pressure when the gateway or Redis is slower than the producer).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Final

Send = Callable[[str, list[bytes]], Awaitable[list[str]]]

MAX_BATCH: Final = 100  # logs per send: the gateway's limit for one POST


class _Queued:
    __slots__ = ("future", "logs")

    def __init__(self, logs: list[bytes], future: asyncio.Future[list[str]]) -> None:
        self.logs = logs
        self.future = future


class Batches:
    def __init__(
        self,
        send: Send,
        *,
        max_batch: int = MAX_BATCH,
        max_pending: int = 10_000,
        linger: float = 0.0,
    ) -> None:
        """`send(room, logs)` stores logs and returns their ids, or raises; `linger` (seconds)
        waits that long before a room's send to gather more."""
        self._send = send
        self._max_batch = max(1, max_batch)
        self._max_pending = max(1, max_pending)
        self._linger = linger
        self._rooms: dict[str, deque[_Queued]] = {}
        self._senders: set[asyncio.Task[None]] = set()
        self._pending = 0  # logs queued or being sent
        self._room_for_more = asyncio.Condition()

    @property
    def pending(self) -> int:
        return self._pending

    async def put(self, room: str, logs: list[bytes]) -> list[str]:
        """Queue `logs` (kept together, in one send) and return their ids once stored.

        Cancelling the caller does not take back logs already queued: they are still sent."""
        if self._pending and self._pending + len(logs) > self._max_pending:
            async with self._room_for_more:
                # A batch bigger than the bound goes alone, once nothing else is pending.
                await self._room_for_more.wait_for(
                    lambda: not self._pending or self._pending + len(logs) <= self._max_pending
                )
        loop = asyncio.get_running_loop()
        queued = _Queued(logs, loop.create_future())
        self._pending += len(logs)
        queue = self._rooms.get(room)
        if queue is None:
            self._rooms[room] = queue = deque()
            # Its first step runs after the callbacks already due this turn: the other emits
            # made now join its first send.
            task = loop.create_task(self._sender(room, queue), name=f"roomlogs-publish-{room}")
            self._senders.add(task)
            task.add_done_callback(self._senders.discard)
        queue.append(queued)
        return await queued.future

    async def drain(self) -> None:
        """Wait until everything queued so far is sent (or failed)."""
        while self._senders:
            await asyncio.gather(*self._senders, return_exceptions=True)

    async def _sender(self, room: str, queue: deque[_Queued]) -> None:
        try:
            while queue:
                if self._linger > 0:
                    await asyncio.sleep(self._linger)  # the asked-for wait, not a synchronisation
                batch = [queue.popleft()]
                size = len(batch[0].logs)
                while queue and size + len(queue[0].logs) <= self._max_batch:
                    size += len(queue[0].logs)
                    batch.append(queue.popleft())
                await self._one_send(room, batch, size)
        finally:
            # No await between the last `while queue` and here: an emit arriving later finds
            # no queue and starts the next sender.
            if self._rooms.get(room) is queue:
                del self._rooms[room]

    async def _one_send(self, room: str, batch: list[_Queued], size: int) -> None:
        try:
            logs = batch[0].logs if len(batch) == 1 else [log for q in batch for log in q.logs]
            try:
                ids = await self._send(room, logs)
            except asyncio.CancelledError:  # the loop is closing: so are the emits
                for queued in batch:
                    queued.future.cancel()
                raise
            except Exception as exc:
                for queued in batch:
                    if not queued.future.done():
                        # Each its own copy: one exception shared by many awaiting tasks would
                        # collect all their tracebacks.
                        queued.future.set_exception(_copy(exc))
                return
            start = 0
            for queued in batch:
                end = start + len(queued.logs)
                if not queued.future.done():  # its caller was cancelled: stored all the same
                    queued.future.set_result(ids[start:end])
                start = end
        finally:
            self._pending -= size
            async with self._room_for_more:
                self._room_for_more.notify_all()


def _copy(exc: Exception) -> Exception:
    try:
        twin = type(exc)(*exc.args)
        twin.__dict__.update(exc.__dict__)
        twin.__cause__ = exc.__cause__
        return twin
    except Exception:  # an exception that cannot be rebuilt from its args
        return exc
