"""In-process fan-out: room → subscribers. No I/O and no awaits, so it is easy to reason about.

Dispatch puts the message (encoded once) into each subscriber's bounded buffer; a subscriber
that cannot take it is closed as a slow consumer right here, in one place, and nobody else
waits for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator

from .frames import Message
from .ids import StreamKey
from .subscriber import Subscriber

log = logging.getLogger(__name__)

SLOW_CONSUMER = "slow_consumer"


class Hub:
    def __init__(self, on_slow: Callable[[Subscriber], None] | None = None) -> None:
        # dict as an insertion-ordered set: iteration order is stable while dispatching.
        self._rooms: dict[str, dict[Subscriber, None]] = {}
        # The newest stream id delivered per room; drops a message seen twice (live + catch-up).
        self._last: dict[str, StreamKey] = {}
        self._count = 0
        self._on_slow = on_slow
        # Subscribers with frames to flush; one flush per loop turn, so a burst read at once
        # goes out as one write per stream, and a lone message goes out without delay.
        self._dirty: list[Subscriber] = []
        self._flush_handle: asyncio.Handle | None = None

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Subscriber]:
        for subs in list(self._rooms.values()):
            yield from list(subs)

    @property
    def room_count(self) -> int:
        return len(self._rooms)

    def rooms(self) -> list[str]:
        return list(self._rooms)

    def subscribers(self, room: str) -> int:
        return len(self._rooms.get(room, ()))

    def last_key(self, room: str) -> StreamKey | None:
        return self._last.get(room)

    def add(self, sub: Subscriber) -> None:
        subs = self._rooms.setdefault(sub.room, {})
        if sub not in subs:
            subs[sub] = None
            self._count += 1

    def remove(self, sub: Subscriber) -> None:
        subs = self._rooms.get(sub.room)
        if subs is None or sub not in subs:
            return
        del subs[sub]
        self._count -= 1
        if not subs:
            del self._rooms[sub.room]
            self._last.pop(sub.room, None)

    def dispatch(self, msg: Message) -> int:
        """Offer `msg` to every subscriber of its room; returns how many were offered it."""
        subs = self._rooms.get(msg.room)
        if not subs:
            return 0
        key = msg.key
        if key is not None:
            last = self._last.get(msg.room)
            if last is not None and key <= last:
                return 0
            self._last[msg.room] = key
        slow: list[Subscriber] | None = None
        dirty = self._dirty  # inlined _mark(): this loop runs once per stream per message
        for sub in subs:
            if not sub.offer(msg):
                if slow is None:
                    slow = []
                slow.append(sub)
            elif not sub.flagged and sub.direct is not None:
                sub.flagged = True
                dirty.append(sub)
        self._schedule_flush()
        if slow is not None:
            for sub in slow:
                self.remove(sub)
                sub.close(SLOW_CONSUMER)
                log.warning("slow consumer closed: room=%s buffer=%d", sub.room, sub.limit)
                if self._on_slow is not None:
                    self._on_slow(sub)
        return len(subs) + (len(slow) if slow else 0)

    def flush(self) -> None:
        self._flush_handle = None
        dirty, self._dirty = self._dirty, []
        for sub in dirty:
            sub.flagged = False
            sub.flush()

    def control(self, frame: bytes) -> None:
        """Send one shared control frame (the heartbeat) to every subscriber."""
        for subs in self._rooms.values():
            for sub in subs:
                sub.control(frame)
                self._mark(sub)
        self._schedule_flush()

    def _mark(self, sub: Subscriber) -> None:
        if sub.direct is not None and not sub.flagged:
            sub.flagged = True
            self._dirty.append(sub)

    def _schedule_flush(self) -> None:
        if self._dirty and self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self.flush)

    def sweep(self, now: float | None = None) -> int:
        """Close subscribers whose client has gone, or whose token expired at `now` (epoch s).

        A live stream hears of its client leaving from its transport (`connection_lost`);
        this catches the rest (a handler still replaying, with `handler_cancellation=False`),
        and is the one timer behind every token expiry. Returns how many were closed.
        """
        gone: list[tuple[Subscriber, str]] = []
        for sub in self:
            transport = sub.transport
            if transport is not None and transport.is_closing():
                gone.append((sub, "client_gone"))
            elif now is not None and sub.expires_at <= now:
                gone.append((sub, "token_expired"))
        for sub, reason in gone:
            self.remove(sub)
            sub.close(reason)
        return len(gone)

    def collect_sent(self) -> tuple[int, int]:
        """Events and bytes written directly since the last call (summed, then reset)."""
        events = size = 0
        for subs in self._rooms.values():
            for sub in subs:
                events += sub.sent
                size += sub.sent_bytes
                sub.sent = sub.sent_bytes = 0
        return events, size

    def close_all(self, reason: str) -> None:
        for sub in list(self):
            self.remove(sub)
            sub.close(reason)
