"""One connection's side of the fan-out: a bounded queue plus a wake-up signal.

The hub only ever calls the non-blocking methods (`offer`, `control`, `close`); the stream
handler is the only one that awaits (`wait`). Mercure's rule: a full buffer is never thinned,
it ends the subscription ("slow consumer") and the client resumes by id from history.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Final

from .frames import Message
from .ids import StreamKey
from .logs import LEVELS

# Bytes already waiting in a socket's buffer above which frames queue for the handler instead
# (which then waits for the socket to drain): direct writes never grow a slow socket's buffer.
DIRECT_WRITE_LIMIT: Final = 64 * 1024
LEVEL_RANK: Final = {name: rank for rank, name in enumerate(LEVELS)}


class Subscriber:
    __slots__ = (
        "_control",
        "_loop",
        "_queue",
        "_waiter",
        "after",
        "agent_type",
        "busy",
        "close_reason",
        "direct",
        "direct_chunked",
        "flagged",
        "limit",
        "min_rank",
        "oldest_ms",
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
    ) -> None:
        self.room = room
        self.limit = limit
        self.min_rank = LEVEL_RANK[min_level] if min_level else 0
        self.agent_type = agent_type
        self.transport = transport
        # Live messages with a key at or below `after` were already sent by the replay.
        self.after: StreamKey | None = None
        self.close_reason: str | None = None
        # True while the handler is inside a write; a slow-consumer close then aborts the socket.
        self.busy = False
        # Set by the handler once the stream is live: while nothing is queued and no write is
        # in flight, the hub writes frames straight to this transport (no task switch).
        self.direct: asyncio.Transport | None = None
        self.direct_chunked = True
        self.sent = 0
        self.sent_bytes = 0
        self.taken = 0  # frames in the last take()
        self.flagged = False  # in the hub's list of subscribers to flush
        # Kept: asyncio.get_running_loop() costs a getpid() system call per call on 3.11.
        self._loop: asyncio.AbstractEventLoop | None = None
        # The publish time (stream id milliseconds) of the oldest log in the last take().
        self.oldest_ms = 0
        self._queue: deque[Message] = deque()
        self._control: bytes | None = None
        self._waiter: asyncio.Future[None] | None = None

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
        if self.direct is None:
            self._wake()
        # else: the hub flushes this subscriber once, after the messages at hand are dispatched
        return True

    def flush(self) -> None:
        """Write what is queued straight to the socket when that is safe, else wake the handler.

        Safe means: no handler write in flight (it would interleave), and the socket keeps up
        (its buffer is small). Otherwise the handler writes, waiting for the socket to drain,
        and the bounded queue decides whether this is a slow consumer.
        """
        direct = self.direct
        if (
            direct is None
            or self.busy
            or self.close_reason is not None
            or direct.get_write_buffer_size() > DIRECT_WRITE_LIMIT
            or direct.is_closing()
        ):
            self._wake()
            return
        queue = self._queue
        if len(queue) == 1 and self._control is None and self.after is None:
            msg = queue.popleft()  # the common case: one log, written with its pre-made chunk
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
        if self.direct is None:
            self._wake()

    def close(self, reason: str) -> None:
        if self.close_reason is None:
            self.close_reason = reason
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self) -> None:
        """Return when there is something to send, or the subscription was closed."""
        if self._queue or self._control is not None or self.close_reason is not None:
            return
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiter = waiter
        try:
            await waiter
        finally:
            if self._waiter is waiter:
                self._waiter = None

    def take(self) -> bytes:
        """Everything queued, as one coalesced write (control frame first)."""
        parts: list[bytes] = []
        if self._control is not None:
            parts.append(self._control)
            self._control = None
        queue = self._queue
        after = self.after
        self.oldest_ms = 0
        while queue:
            msg = queue.popleft()
            if after is not None and msg.key is not None:
                if msg.key <= after:
                    continue
                # Keys arrive in order: once one is past the replay, all later ones are.
                self.after = after = None
            if not self.oldest_ms and msg.key is not None:
                self.oldest_ms = msg.key[0]
            parts.append(msg.frame)
        self.taken = len(parts)
        return b"".join(parts)

    @property
    def queued(self) -> int:
        return len(self._queue)
