"""In-process fan-out: room → streams. No I/O and no awaits, so it is easy to reason about.

Dispatch collects a loop turn's messages per room; `flush` encodes a burst once per room and
writes it alike to every idle stream, or queues it in each stream's bounded buffer. A stream
that cannot take it is closed as a slow consumer right here, and nobody else waits for it.
The hub tells its listener when a room gains its first stream and loses its last: that is
what a broker subscribes and unsubscribes by.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Protocol

from .chunked import chunk
from .endings import Ending
from .message import Message
from .subscriber import Subscriber


class RoomListener(Protocol):
    """Told when a room gains its first local stream and when it loses its last."""

    def room_opened(self, room: str) -> None: ...

    def room_closed(self, room: str) -> None: ...


class Hub:
    def __init__(self) -> None:
        # dicts as insertion-ordered sets: iteration order is stable while dispatching.
        self._rooms: dict[str, dict[Subscriber, None]] = {}
        self._subs: dict[Subscriber, None] = {}
        # Per open room, one `(room,)` whose name every stream of the room shares: each request
        # parsed its own copy (~100 bytes a stream for the name and the tuple).
        self._names: dict[str, tuple[str]] = {}
        self.listener: RoomListener | None = None
        # Messages of this loop turn per room, fanned out together by `flush`: the frames of a
        # burst are joined once per room, not once per stream, and each idle stream gets them
        # in one write; a lone message still goes out at the end of the turn it arrived in.
        self._pending: dict[str, list[Message]] = {}
        # Streams with queued frames to write (filters, replay merge, paused, heartbeats): a
        # dict as an ordered set, so a stream needs no flag of its own (16 bytes each).
        self._dirty: dict[Subscriber, None] = {}
        # Streams of several rooms (`cursor` set), per room: they take a turn's messages in
        # arrival order across their rooms, not room by room, so they are fed apart.
        self._mixed: dict[str, dict[Subscriber, None]] = {}
        self._arrivals: list[Message] = []
        self._flush_handle: asyncio.Handle | None = None
        # Kept: asyncio.get_running_loop() costs a getpid() system call per call on 3.11.
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._subs)

    def __iter__(self) -> Iterator[Subscriber]:
        return iter(list(self._subs))

    @property
    def room_count(self) -> int:
        return len(self._rooms)

    def rooms(self) -> list[str]:
        return list(self._rooms)

    def subscribers(self, room: str) -> int:
        return len(self._rooms.get(room, ()))

    def add(self, sub: Subscriber) -> None:
        if sub in self._subs:
            return
        self._subs[sub] = None
        if sub.owner is None:
            sub.owner = self  # without `Endings` (unit tests), an ending only leaves the hub
        names = self._names
        for room in sub.rooms:
            subs = self._rooms.get(room)
            if subs is None:
                subs = self._rooms[room] = {}
                names[room] = (room,)
                if self.listener is not None:
                    self.listener.room_opened(room)
            subs[sub] = None
            if sub.cursor is not None:
                self._mixed.setdefault(room, {})[sub] = None
        rooms = sub.rooms
        sub.rooms = names[rooms[0]] if len(rooms) == 1 else tuple(names[r][0] for r in rooms)

    def remove(self, sub: Subscriber) -> None:
        if sub not in self._subs:
            return  # not here (any more)
        del self._subs[sub]
        for room in sub.rooms:
            subs = self._rooms.get(room)
            if subs is None:
                continue
            subs.pop(sub, None)
            mixed = self._mixed.get(room)
            if mixed is not None:
                mixed.pop(sub, None)
                if not mixed:
                    del self._mixed[room]
            if not subs:
                del self._rooms[room]
                self._names.pop(room, None)
                if self.listener is not None:
                    self.listener.room_closed(room)

    def ended(self, sub: Subscriber) -> None:
        """`Owner` for streams that have no other: the hub only forgets them."""
        self.remove(sub)

    def dispatch(self, msg: Message) -> int:
        """Accept `msg` for its room's streams; returns how many it is for.

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
        if room in self._mixed:
            self._arrivals.append(msg)
        return len(subs)

    def flush(self) -> None:
        """Fan this turn's messages out, then write what streams queued."""
        self._flush_handle = None
        if self._pending:
            pending, self._pending = self._pending, {}
            rooms = self._rooms
            for room, msgs in pending.items():
                subs = rooms.get(room)
                if subs:
                    self._fan_out(subs, msgs)
        if self._arrivals:
            arrivals, self._arrivals = self._arrivals, []
            self._feed_mixed(arrivals)
        if self._dirty:
            dirty, self._dirty = self._dirty, {}
            for sub in dirty:
                sub.flush()

    def _fan_out(self, subs: dict[Subscriber, None], msgs: list[Message]) -> None:
        if len(msgs) == 1:
            frame, framed = msgs[0].frame, msgs[0].chunk
        else:
            frame = b"".join([m.frame for m in msgs])  # encoded once for the whole room
            framed = chunk(frame)
        count = len(msgs)
        slow: list[Subscriber] | None = None
        for sub in subs:
            if sub.cursor is not None:
                continue  # a stream of several rooms: fed by `_feed_mixed`
            if sub.write_shared(frame, framed, count):
                continue  # the common case: an idle, unfiltered, live stream
            for msg in msgs:
                if not sub.offer(msg):
                    if slow is None:
                        slow = []
                    slow.append(sub)
                    break
            else:
                self._mark(sub)
        if slow is not None:
            for sub in slow:
                sub.close(Ending.SLOW_CONSUMER)

    def _feed_mixed(self, arrivals: list[Message]) -> None:
        """This turn's messages, in the order they arrived, to the streams of several rooms."""
        mixed = self._mixed
        slow: list[Subscriber] | None = None
        for msg in arrivals:
            subs = mixed.get(msg.room)
            if not subs:
                continue
            for sub in subs:
                if sub.offer(msg):
                    self._mark(sub)
                else:
                    if slow is None:
                        slow = []
                    slow.append(sub)
        if slow is not None:
            for sub in slow:
                sub.close(Ending.SLOW_CONSUMER)

    def control(self, frame: bytes) -> None:
        """Send one shared control frame (the heartbeat) to every stream."""
        for sub in self._subs:
            sub.control(frame)
            self._mark(sub)
        if self._dirty:
            self._schedule_flush()

    def _mark(self, sub: Subscriber) -> None:
        if sub.live is not None:
            self._dirty[sub] = None

    def _schedule_flush(self) -> None:
        if self._flush_handle is None:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_soon(self.flush)

    def sweep(self, now: float | None = None) -> int:
        """Close streams whose client has gone, or whose token expired at `now` (epoch s; the
        caller takes the clock skew allowed off it).

        A live stream hears of its client leaving from its transport (`connection_lost`);
        this catches the rest (a handler still replaying, with `handler_cancellation=False`),
        and is the one timer behind every token expiry. Returns how many were closed.
        """
        gone: list[tuple[Subscriber, Ending]] = []
        for sub in self._subs:
            transport = sub.transport
            if transport is not None and transport.is_closing():
                gone.append((sub, Ending.CLIENT_GONE))
            elif now is not None and sub.expires_at <= now:
                gone.append((sub, Ending.TOKEN_EXPIRED))
        for sub, ending in gone:
            sub.close(ending)
        return len(gone)

    def collect_sent(self) -> tuple[int, int]:
        """Events and bytes written to live streams since the last call (summed, then reset)."""
        events = size = 0
        for sub in self._subs:
            conn = sub.live
            if conn is not None:
                events += conn.sent
                size += conn.sent_bytes
                conn.sent = conn.sent_bytes = 0
        return events, size

    def close_all(self, ending: Ending) -> None:
        for sub in list(self._subs):
            sub.close(ending)
