"""Which rooms a per-room subscriber holds, and what it must tell Redis next.

Pure bookkeeping, no I/O, so that the wire code of every per-room subscriber (`SUBSCRIBE_MODE=
rooms` on one Redis or Sentinel, sharded pub/sub on a Cluster) shares one answer to the subtle
parts: a room that closes and reopens within `UNSUBSCRIBE_LINGER` costs Redis nothing; changes
are taken in batches (one SUBSCRIBE for many rooms after a reconnect, not one per room); a stream
waits for its room's confirmation before its replay is read, so that no log falls between the
replay and live; after a lost connection every wanted room is subscribed again and marked for a
catch-up from history.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Final

# Rooms named in one SUBSCRIBE/UNSUBSCRIBE: a reconnect with 100,000 rooms sends 196 commands,
# each answered before the next batch (Centrifugo batches its resubscribes alike).
BATCH: Final = 512


@dataclass(slots=True)
class Changes:
    """What to send, in this order: unsubscribe first (frees Redis' output buffer), then
    subscribe; `resubscribed` are rooms subscribed again after a loss (to catch up)."""

    subscribe: list[str] = field(default_factory=list)
    unsubscribe: list[str] = field(default_factory=list)
    resubscribed: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.subscribe or self.unsubscribe)


def batches(rooms: list[str], size: int = BATCH) -> Iterable[list[str]]:
    for start in range(0, len(rooms), size):
        yield rooms[start : start + size]


class Interest:
    """Rooms wanted (a local stream, or lingering) against rooms Redis confirmed.

    `wake` is called (synchronously, at most once until `take`) when there is something to
    send: the wire code sets an event its writer waits on.
    """

    def __init__(self, linger: float, wake: Callable[[], None]) -> None:
        self._linger = linger
        self._wake = wake
        self.wanted: set[str] = set()
        self.confirmed: set[str] = set()
        self._to_subscribe: dict[str, None] = {}  # insertion-ordered: first opened, first sent
        self._to_unsubscribe: dict[str, None] = {}
        self._resubscribe: set[str] = set()  # wanted again after a loss: catch up when confirmed
        self._lingering: dict[str, asyncio.TimerHandle] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._woken = False

    # -- the hub's room events -----------------------------------------------------------

    def open(self, rooms: Collection[str]) -> None:
        """These rooms gained their first local stream."""
        for room in rooms:
            handle = self._lingering.pop(room, None)
            if handle is not None:
                handle.cancel()  # still subscribed (or about to be): nothing to send
                continue
            if room in self.wanted:
                continue
            self.wanted.add(room)
            if room in self._to_unsubscribe:
                # Closed past its linger and reopened before the UNSUBSCRIBE went out: keep it.
                del self._to_unsubscribe[room]
            elif room not in self.confirmed:
                self._to_subscribe[room] = None
        self._poke()

    def close(self, rooms: Collection[str]) -> None:
        """These rooms lost their last local stream: let go after the linger."""
        if self._linger <= 0:
            self._drop(rooms)
            return
        loop = asyncio.get_running_loop()
        for room in rooms:
            if room in self.wanted and room not in self._lingering:
                self._lingering[room] = loop.call_later(self._linger, self._drop, (room,))

    def _drop(self, rooms: Collection[str]) -> None:
        for room in rooms:
            self._lingering.pop(room, None)
            if room not in self.wanted:
                continue
            self.wanted.discard(room)
            self._resubscribe.discard(room)
            if room in self._to_subscribe:
                del self._to_subscribe[room]  # never sent: nothing to undo
                continue
            self._to_unsubscribe[room] = None
        self._poke()

    # -- the wire code's side ------------------------------------------------------------

    def take(self) -> Changes:
        """What to send now; the caller sends it (or, on failure, calls `lost`)."""
        self._woken = False
        changes = Changes(
            subscribe=list(self._to_subscribe),
            unsubscribe=list(self._to_unsubscribe),
            resubscribed={room for room in self._to_subscribe if room in self._resubscribe},
        )
        self._to_subscribe.clear()
        self._to_unsubscribe.clear()
        self._resubscribe.difference_update(changes.resubscribed)
        return changes

    def subscribed(self, rooms: Iterable[str]) -> None:
        """Redis confirmed these rooms' subscriptions: their waiting streams may replay."""
        for room in rooms:
            self.confirmed.add(room)
            for waiter in self._waiters.pop(room, ()):
                if not waiter.done():
                    waiter.set_result(None)

    def unsubscribed(self, rooms: Iterable[str]) -> None:
        """Redis confirmed (or pushed: a Cluster slot moved) the end of these subscriptions.
        A room still wanted is subscribed again, and caught up once confirmed."""
        for room in rooms:
            self.confirmed.discard(room)
            if room in self.wanted and room not in self._to_subscribe:
                self._to_subscribe[room] = None
                self._resubscribe.add(room)
        self._poke()

    def lost(self, rooms: Iterable[str] | None = None) -> None:
        """The connection holding these subscriptions (all when None) is gone: every wanted
        room among them is subscribed again on the next connection, then caught up."""
        # All: the confirmed ones and those whose SUBSCRIBE was in flight.
        gone = self.wanted | self.confirmed if rooms is None else set(rooms)
        for room in gone:
            self._to_unsubscribe.pop(room, None)  # the connection took them with it
        self.unsubscribed(gone)

    def pending(self) -> set[str]:
        """Wanted rooms that Redis has not confirmed yet."""
        return self.wanted - self.confirmed

    async def until_subscribed(self, rooms: Collection[str]) -> None:
        """Until Redis confirmed every one of `rooms` that is still wanted (a stream's replay
        starts after this). Bounded by the caller."""
        loop = asyncio.get_running_loop()
        waiters: list[asyncio.Future[None]] = []
        for room in rooms:
            if room in self.confirmed or room not in self.wanted:
                continue
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(room, []).append(waiter)
            waiters.append(waiter)
        if waiters:
            await asyncio.gather(*waiters)

    def clear(self) -> None:
        """Closing for good: no timer may fire after the broker is gone."""
        for handle in self._lingering.values():
            handle.cancel()
        self._lingering.clear()
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.cancel()
        self._waiters.clear()

    def _poke(self) -> None:
        if (self._to_subscribe or self._to_unsubscribe) and not self._woken:
            self._woken = True
            self._wake()
