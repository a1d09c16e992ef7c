"""Single flight for the reads of opening streams: one Redis call for many identical ones.

In a reconnect storm (a gateway's network blips, a load balancer moves its clients) the
streams of a room come back together, most with the same `Last-Event-ID` (the room's last
log, or the one before a blip): each read the same window and the same page of history, and
redis-py's Python per call (pool, packing, parsing) was a third of a handshake. Here the
identical reads (same call, same arguments) that queue while one is in flight are sent as one
when it returns, and each caller gets that answer.

Why a shared answer is each caller's own: a caller joins only a read that has not been sent
yet, and it is registered in the hub (its rooms subscribed and confirmed) before it asks, so
whatever is stored after Redis ran the read reaches it live, as it would after a read of its
own. A read in flight is never joined: a log stored between its run and a late caller's
registration would be in neither.

The answers are shared, not copied: callers must not mutate them (the replay does not).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

from .broker import Broker, HistoryEntry, Window

T = TypeVar("T")


class _Flight(Generic[T]):
    __slots__ = ("future", "read")

    def __init__(self, future: asyncio.Future[T], read: Callable[[], Awaitable[T]]) -> None:
        self.future = future
        self.read = read


class SingleFlight:
    """At most one read in flight per key; the callers of a key that come meanwhile wait for
    the next one, sent as soon as it returns."""

    def __init__(self) -> None:
        self._waiting: dict[Hashable, _Flight[Any]] = {}  # not sent yet: joinable
        self._running: set[Hashable] = set()

    async def read(self, key: Hashable, read: Callable[[], Awaitable[T]]) -> T:
        flight: _Flight[T] | None = self._waiting.get(key)
        if flight is None:
            flight = _Flight(asyncio.get_running_loop().create_future(), read)
            self._waiting[key] = flight
            if key not in self._running:
                self._start(key)
        # Shielded: a caller that gives up (its client left) must not cancel the others' read.
        return await asyncio.shield(flight.future)

    def _start(self, key: Hashable) -> None:
        self._running.add(key)
        # A task's first step runs on the next loop turn: the callers of this turn join first.
        asyncio.get_running_loop().create_task(self._run(key))

    async def _run(self, key: Hashable) -> None:
        try:
            while True:
                flight = self._waiting.pop(key, None)
                if flight is None:
                    return
                # Popped before it is sent: from here on, callers wait for the next read.
                future = flight.future
                try:
                    result = await flight.read()
                except asyncio.CancelledError:
                    future.cancel()
                    raise
                except Exception as exc:  # each caller raises what its own call would have
                    if not future.done():
                        future.set_exception(exc)
                else:
                    if not future.done():
                        future.set_result(result)
        finally:
            self._running.discard(key)
            if (leftover := self._waiting.pop(key, None)) is not None:
                leftover.future.cancel()  # only when cancelled itself (the loop is closing)


class SharedReads:
    """The broker's reads that a stream's opening makes, each shared by identical callers."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._flights = SingleFlight()

    async def resume(self, room: str, after: str, limit: int) -> tuple[Window, list[HistoryEntry]]:
        broker = self._broker
        return await self._flights.read(
            ("resume", room, after, limit), lambda: broker.resume(room, after, limit)
        )

    async def history(self, room: str, after: str | None, limit: int) -> list[HistoryEntry]:
        broker = self._broker
        return await self._flights.read(
            ("history", room, after, limit), lambda: broker.history(room, after, limit)
        )

    async def last(self, room: str, count: int, *, before: str | None = None) -> list[HistoryEntry]:
        broker = self._broker
        return await self._flights.read(
            ("last", room, count, before), lambda: broker.last(room, count, before=before)
        )
