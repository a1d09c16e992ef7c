"""One stream's side of the fan-out: its rooms, filter, bounded queue and replay positions.

The hub only ever calls the non-blocking methods (`write_shared`, `offer`, `control`,
`flush`, `close`). Mercure's rule: a full buffer is never thinned, it ends the subscription
("slow consumer") and the client resumes by id from history. The socket is not here: until
the hand-off the handler writes through aiohttp; after it, `live` is the `Connection`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Final, Protocol

from .connection import Connection, ParkedConnection
from .cursor import Cursor
from .endings import Ending
from .events import LOG_HEAD, log_frame
from .filters import StreamFilter
from .ids import StreamKey
from .message import Message
from .roomtag import tagged, with_room


class Owner(Protocol):
    """Who is told, once, that a stream ended (`Endings` in the app, the bare hub in tests)."""

    def ended(self, sub: Subscriber) -> None: ...


class Subscriber:
    __slots__ = (
        "_control",
        "_queue",
        "after",
        "cursor",
        "ending",
        "expires_at",
        "filter",
        "limit",
        "live",
        "opened",
        "owner",
        "request_id",
        "rooms",
        "transport",
    )

    def __init__(
        self,
        rooms: str | Sequence[str],
        limit: int,
        *,
        filter: StreamFilter | None = None,
        transport: asyncio.Transport | None = None,
        owner: Owner | None = None,
        expires_at: float = float("inf"),
        request_id: str = "",
        opened: float = 0.0,
        cursor: Cursor | None = None,
    ) -> None:
        self.rooms: tuple[str, ...] = (rooms,) if isinstance(rooms, str) else tuple(rooms)
        self.limit = limit
        self.filter = filter
        # The request's socket, for the sweep to see a client gone during the replay.
        self.transport = transport
        self.owner = owner
        self.expires_at = (
            expires_at  # the token's exp (epoch s); the tick closes it after, + leeway
        )
        self.request_id = request_id
        self.opened = opened  # time.monotonic(), for the close log line
        # Per room, the newest id the replay sent: live messages at or below it are skipped.
        self.after: dict[str, StreamKey] | None = None
        # A stream of several rooms (`GET /api/v1/logs?rooms=`): its frames are its own, with
        # the room in each log and this cursor as their `id:`; never the room's shared frame.
        self.cursor = cursor
        self.ending: Ending | None = None
        self.live: Connection | None = None
        # Made at the first frame queued, dropped when drained: an idle stream holds no list
        # (56 bytes each). A list, not a deque: it is always drained whole.
        self._queue: list[Message] | None = None
        self._control: bytes | None = None

    def __repr__(self) -> str:
        return f"<Subscriber rooms={self.rooms!r} queued={self.queued}>"

    @property
    def room(self) -> str:
        """The stream's rooms as one name, for log lines."""
        return ",".join(self.rooms)

    @property
    def queued(self) -> int:
        return len(self._queue) if self._queue is not None else 0

    def replayed(self, room: str, key: StreamKey) -> None:
        """The replay sent `room` up to `key`: the live side resumes after it."""
        if self.after is None:
            self.after = {room: key}
        elif key > self.after.get(room, key):
            self.after[room] = key
        else:
            self.after.setdefault(room, key)

    def offer(self, msg: Message) -> bool:
        """Queue `msg` without blocking; False means the buffer is full (a slow consumer)."""
        if self.ending is not None:
            return True
        if not msg.data:  # a gap: not for a stream still merging its replay (which told it)
            if self.after is not None and msg.room in self.after:
                return True
        elif self.filter is not None and not self.filter.wants(msg.level, msg.agent_type):
            return True
        queue = self._queue
        if queue is None:
            if self.limit <= 0:
                return False
            self._queue = [msg]
        elif len(queue) >= self.limit:
            return False
        else:
            queue.append(msg)
        return True

    def write_shared(self, frame: bytes, chunk: bytes, count: int) -> bool:
        """Write the frames every idle, unfiltered one-room stream of the room gets alike (the
        hub never offers them to a stream of several rooms, whose frames are its own); False means
        this one needs its queue (filters, replay merge, a heartbeat, a paused transport)."""
        conn = self.live
        if (
            conn is None
            or conn.paused
            or self._queue
            or self._control is not None
            or self.after is not None
            or self.filter is not None
        ):
            return False
        transport = conn.transport
        if transport.is_closing():
            return False
        data = chunk if conn.chunked else frame
        transport.write(data)
        conn.sent += count
        conn.sent_bytes += len(data)
        return True

    def flush(self) -> None:
        """Write what is queued straight to the socket, unless its buffer is over the mark.

        A paused transport keeps frames in the bounded queue; `resume_writing` flushes them,
        and a client that does not read fills the queue and is closed as a slow consumer.
        """
        conn = self.live
        if conn is None or conn.paused or conn.transport.is_closing():
            return
        queue = self._queue
        if (
            queue is not None
            and len(queue) == 1
            and self._control is None
            and self.after is None
            and self.cursor is None
        ):
            msg = queue[0]  # the common case: one log, written with its pre-made chunk
            self._queue = None
            data = msg.chunk if conn.chunked else msg.frame
            conn.transport.write(data)
            conn.sent += 1
            conn.sent_bytes += len(data)
            return
        body, count = self.take()
        if body:
            conn.write(body, count)

    def control(self, frame: bytes) -> None:
        """A heartbeat-like frame: outside the bound, the newest replaces an unsent one."""
        self._control = frame

    def close(self, ending: Ending) -> None:
        """End the stream, once, for this reason; the owner does the rest (see endings.py)."""
        if self.ending is None:
            self.ending = ending
            if self.owner is not None:
                self.owner.ended(self)

    def attach(
        self,
        transport: asyncio.Transport,
        *,
        chunked: bool,
        parked: asyncio.BaseProtocol | None = None,
    ) -> Connection:
        """The hand-off: become live on `transport` and write what queued during the replay.

        `parked`: the protocol replaced (aiohttp's) when the handler stays, told of the loss."""
        conn = self.live = (
            Connection(transport, self, chunked=chunked)
            if parked is None
            else ParkedConnection(transport, self, chunked=chunked, forward=parked)
        )
        self.transport = transport
        transport.set_protocol(conn)
        self.flush()
        return conn

    def take(self) -> tuple[bytes, int]:
        """Everything queued, as one coalesced write (control frame first), and its events."""
        parts: list[bytes] = []
        if self._control is not None:
            parts.append(self._control)
            self._control = None
        queue = self._queue
        after = self.after
        cursor = self.cursor
        count = 0
        for msg in queue or ():
            if after is not None and msg.key is not None:
                seen = after.get(msg.room)
                if seen is not None:
                    if msg.key <= seen:
                        continue
                    # Keys arrive in order: once one is past the replay, all later ones are.
                    del after[msg.room]
                    if not after:
                        self.after = after = None
            count += 1
            if cursor is None:
                parts.append(msg.frame)
            elif msg.key is not None and msg.data:
                # A multi-room stream's log, in parts joined with the rest of the write.
                cursor.advance(msg.room, msg.key, msg.id)
                parts += (_ID, cursor.encode(), _LOG_MID, tagged(msg.room, msg.data), _END)
            else:
                parts.append(tagged_frame(msg))
        self._queue = None
        return b"".join(parts), count


_ID: Final = b"id: "
_LOG_MID: Final = b"\n" + LOG_HEAD
_END: Final = b"\n\n"


def tagged_frame(msg: Message) -> bytes:
    """A gap or an id-less log on a multi-room stream: its data names the room too."""
    if not msg.data:  # a gap (no id: it is not a position)
        head, _, payload = msg.frame.partition(b"data: ")
        return head + b"data: " + with_room(msg.room, payload[:-2]) + _END
    return log_frame(None, with_room(msg.room, msg.data))  # a plain log that was not stored
