"""One connection's side of the fan-out: a bounded queue, and, once live, the socket's protocol.

The hub only ever calls the non-blocking methods (`offer`, `control`, `flush`, `close`).
Mercure's rule: a full buffer is never thinned, it ends the subscription ("slow consumer") and
the client resumes by id from history.

Once the stream handler has sent the head and the replay, it hands the socket over: the
subscriber becomes the transport's protocol, aiohttp forgets the connection, and the handler
returns. From then on a stream is this object and its transport, nothing else: no task, no
request, no parser, no timer (a few KiB instead of ~17). Flow control is the transport's own:
`pause_writing` stops direct writes, frames queue up to the bound, `resume_writing` flushes.
"""

from __future__ import annotations

import asyncio
from typing import Final, Protocol

from .ids import StreamKey
from .logs import LEVELS
from .message import Message

LEVEL_RANK: Final = {name: rank for rank, name in enumerate(LEVELS)}
# The end of a chunked body: what aiohttp's write_eof would have sent.
LAST_CHUNK: Final = b"0\r\n\r\n"


class Owner(Protocol):
    """Who is told, once, that a subscription ended (the stream module: cleanup, metrics, log)."""

    def closed(self, sub: Subscriber) -> None: ...


class Subscriber(asyncio.Protocol):
    __slots__ = (
        "_control",
        "_queue",
        "after",
        "agent_type",
        "close_reason",
        "direct",
        "direct_chunked",
        "expires_at",
        "flagged",
        "limit",
        "min_rank",
        "opened",
        "owner",
        "paused",
        "request_id",
        "room",
        "sent",
        "sent_bytes",
        "taken",
        "transport",
    )

    def __init__(
        self,
        room: str,
        limit: int,
        *,
        min_level: str | None = None,
        agent_type: str | None = None,
        transport: asyncio.Transport | None = None,
        owner: Owner | None = None,
        expires_at: float = float("inf"),
        request_id: str = "",
        opened: float = 0.0,
    ) -> None:
        self.room = room
        self.limit = limit
        self.min_rank = LEVEL_RANK[min_level] if min_level else 0
        self.agent_type = agent_type
        self.transport = transport
        self.owner = owner
        self.expires_at = expires_at  # wall-clock seconds; the housekeeping tick closes it after
        self.request_id = request_id
        self.opened = opened  # loop time, for the close log line
        # Live messages with a key at or below `after` were already sent by the replay.
        self.after: StreamKey | None = None
        self.close_reason: str | None = None
        # Set by the hand-off: the hub writes frames straight to this transport.
        self.direct: asyncio.Transport | None = None
        self.direct_chunked = True
        self.paused = False  # the transport's buffer is over its high-water mark
        self.sent = 0
        self.sent_bytes = 0
        self.taken = 0  # frames in the last take()
        self.flagged = False  # in the hub's list of subscribers to flush
        # A list, not a deque: it is always drained whole, and an empty list is 56 bytes.
        self._queue: list[Message] = []
        self._control: bytes | None = None

    def __repr__(self) -> str:
        return f"<Subscriber room={self.room!r} queued={len(self._queue)}>"

    @property
    def closed(self) -> bool:
        return self.close_reason is not None

    @property
    def filtered(self) -> bool:
        return bool(self.min_rank) or self.agent_type is not None

    def wants(self, level: object, agent_type: object) -> bool:
        """The `level=` and `agentType=` filters, for a live message or a replayed log."""
        if self.agent_type is not None and agent_type != self.agent_type:
            return False
        if self.min_rank:
            rank = LEVEL_RANK.get(level, len(LEVELS)) if isinstance(level, str) else len(LEVELS)
            return rank >= self.min_rank
        return True

    def offer(self, msg: Message) -> bool:
        """Queue `msg` without blocking; False means the buffer is full (a slow consumer)."""
        if self.close_reason is not None:
            return True
        if (self.min_rank or self.agent_type is not None) and not self.wants(
            msg.level, msg.agent_type
        ):
            return True
        if len(self._queue) >= self.limit:
            return False
        self._queue.append(msg)
        return True

    def write_shared(self, frame: bytes, chunk: bytes, count: int) -> bool:
        """Write the frames every idle, unfiltered stream of the room gets alike; False means
        this one needs its queue (filters, replay merge, a heartbeat, a paused transport)."""
        direct = self.direct
        if (
            direct is None
            or self.paused
            or self._queue
            or self._control is not None
            or self.after is not None
            or self.min_rank
            or self.agent_type is not None
            or direct.is_closing()
        ):
            return False
        data = chunk if self.direct_chunked else frame
        direct.write(data)
        self.sent += count
        self.sent_bytes += len(data)
        return True

    def flush(self) -> None:
        """Write what is queued straight to the socket, unless its buffer is over the mark.

        A paused transport keeps frames in the bounded queue; `resume_writing` flushes them,
        and a client that does not read fills the queue and is closed as a slow consumer.
        """
        direct = self.direct
        if direct is None or self.paused or direct.is_closing():
            return
        queue = self._queue
        if len(queue) == 1 and self._control is None and self.after is None:
            msg = queue.pop()  # the common case: one log, written with its pre-made chunk
            data = msg.chunk if self.direct_chunked else msg.frame
            count = 1
        else:
            body = self.take()
            if not body:
                return
            data = b"%x\r\n%b\r\n" % (len(body), body) if self.direct_chunked else body
            count = self.taken
        direct.write(data)
        self.sent += count
        self.sent_bytes += len(data)

    def control(self, frame: bytes) -> None:
        """A heartbeat-like frame: outside the bound, the newest replaces an unsent one."""
        self._control = frame

    def close(self, reason: str) -> None:
        """End the subscription once; the owner does the rest (socket, metrics, log)."""
        if self.close_reason is None:
            self.close_reason = reason
            if self.owner is not None:
                self.owner.closed(self)

    # -- the hand-off: the live stream is the transport's protocol -------------------------

    def attach(self, transport: asyncio.Transport, *, chunked: bool) -> None:
        """Become `transport`'s protocol and write what queued up during the replay."""
        self.transport = self.direct = transport
        self.direct_chunked = chunked
        transport.set_protocol(self)
        self.flush()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.flush()

    def data_received(self, data: bytes) -> None:
        """An SSE client has nothing more to say; whatever it sends is ignored."""

    def connection_lost(self, exc: Exception | None) -> None:
        self.direct = None
        self.close("client_gone")

    # -- what the hub writes --------------------------------------------------------------

    def take(self) -> bytes:
        """Everything queued, as one coalesced write (control frame first)."""
        parts: list[bytes] = []
        if self._control is not None:
            parts.append(self._control)
            self._control = None
        queue = self._queue
        after = self.after
        for msg in queue:
            if after is not None and msg.key is not None:
                if msg.key <= after:
                    continue
                # Keys arrive in order: once one is past the replay, all later ones are.
                self.after = after = None
            parts.append(msg.frame)
        queue.clear()  # frees the list's array too: an idle stream holds no capacity
        self.taken = len(parts)
        return b"".join(parts)

    @property
    def queued(self) -> int:
        return len(self._queue)
