"""In-process fan-out: room → subscribers. No I/O and no awaits, so it is easy to reason about.

Dispatch puts the message (encoded once) into each subscriber's bounded buffer; a subscriber
that cannot take it is closed as a slow consumer right here, in one place, and nobody else
waits for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Protocol

from .message import Message
from .subscriber import Subscriber

log = logging.getLogger(__name__)

SLOW_CONSUMER = "slow_consumer"


class RoomListener(Protocol):
    """Told when a room gains its first local stream and when it loses its last."""

    def room_opened(self, room: str) -> None: ...

    def room_closed(self, room: str) -> None: ...


class Hub:
    def __init__(self, on_slow: Callable[[Subscriber], None] | None = None) -> None:
        # dict as an insertion-ordered set: iteration order is stable while dispatching.
        self._rooms: dict[str, dict[Subscriber, None]] = {}
        self.listener: RoomListener | None = None
        self._count = 0
        self._on_slow = on_slow
        # Messages of this loop turn per room, fanned out together by `flush`: the frames of a
        # burst are joined once per room, not once per stream, and each idle stream gets them
        # in one write; a lone message still goes out at the end of the turn it arrived in.
        self._pending: dict[str, list[Message]] = {}
        # Subscribers with queued frames to flush (filters, replay merge, paused, heartbeats).
        self._dirty: list[Subscriber] = []
        self._flush_handle: asyncio.Handle | None = None
        # Kept: asyncio.get_running_loop() costs a getpid() system call per call on 3.11.
        self._loop: asyncio.AbstractEventLoop | None = None

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

    def add(self, sub: Subscriber) -> None:
        subs = self._rooms.get(sub.room)
        if subs is None:
            subs = self._rooms[sub.room] = {}
            if self.listener is not None:
                self.listener.room_opened(sub.room)
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
            if self.listener is not None:
                self.listener.room_closed(sub.room)

    def dispatch(self, msg: Message) -> int:
        """Accept `msg` for its room's subscribers; returns how many it is for.

        The fan-out itself happens in `flush`, at the end of this loop turn, with every other
        message of the room read in the same turn.
        """
        room = msg.room
        subs = self._rooms.get(room)
        if not subs:
            return 0
        pending = self._pending.get(room)
        if pending is None:
            self._pending[room] = [msg]
            self._schedule_flush()
        else:
            pending.append(msg)
        return len(subs)

    def flush(self) -> None:
        """Fan this turn's messages out, then write what subscribers queued."""
        self._flush_handle = None
        if self._pending:
            pending, self._pending = self._pending, {}
            rooms = self._rooms
            for room, msgs in pending.items():
                subs = rooms.get(room)
                if subs:
                    self._fan_out(subs, msgs)
        if self._dirty:
            dirty, self._dirty = self._dirty, []
            for sub in dirty:
                sub.flagged = False
                sub.flush()

    def _fan_out(self, subs: dict[Subscriber, None], msgs: list[Message]) -> None:
        if len(msgs) == 1:
            frame, chunk = msgs[0].frame, msgs[0].chunk
        else:
            frame = b"".join([m.frame for m in msgs])  # encoded once for the whole room
            chunk = b"%x\r\n%b\r\n" % (len(frame), frame)
        count = len(msgs)
        slow: list[Subscriber] | None = None
        dirty = self._dirty
        for sub in subs:
            if sub.write_shared(frame, chunk, count):
                continue  # the common case: an idle, unfiltered, live stream
            for msg in msgs:
                if not sub.offer(msg):
                    if slow is None:
                        slow = []
                    slow.append(sub)
                    break
            else:
                if not sub.flagged and sub.direct is not None:
                    sub.flagged = True
                    dirty.append(sub)
        if slow is not None:
            for sub in slow:
                self.remove(sub)
                sub.close(SLOW_CONSUMER)
                log.warning("slow consumer closed: room=%s buffer=%d", sub.room, sub.limit)
                if self._on_slow is not None:
                    self._on_slow(sub)

    def control(self, frame: bytes) -> None:
        """Send one shared control frame (the heartbeat) to every subscriber."""
        for subs in self._rooms.values():
            for sub in subs:
                sub.control(frame)
                self._mark(sub)
        if self._dirty:
            self._schedule_flush()

    def _mark(self, sub: Subscriber) -> None:
        if sub.direct is not None and not sub.flagged:
            sub.flagged = True
            self._dirty.append(sub)

    def _schedule_flush(self) -> None:
        if self._flush_handle is None:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_soon(self.flush)

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
