"""Plain PUBLISH, replayable: a log that a backend sent with a bare `PUBLISH room:R:logs` is
stored in the room's history once, and then delivered with its stream id like any other.

With `SUBSCRIBE_MODE=pattern` every gateway (each worker) receives every such log, whether or
not a stream watches the room; with `rooms`, the gateways watching the room and the keepers
(keeper.py: two leased `PSUBSCRIBE` connections, each with a store of its own) do. Each runs
`PLAIN_SCRIPT` for it; the script stores the log and publishes its envelope unless
another gateway did so first. Pub/sub gives a message no identity, so the claim is by content:
a digest of the channel and the payload, and which occurrence of that payload this gateway has
received within `CLAIM_TTL` (the same text sent twice is two logs: occurrences 1 and 2). All
gateways receive a channel's messages in one order, so they count alike; a gateway that joined
between two copies counts one fewer and finds its claim taken, while the others store it.

Order: a gateway sends its scripts in the order it received the logs, on one connection, one
pipeline at a time, so occurrence n+1 of anything is stored only after everything received
before it. Live delivery waits for the envelope: one Redis round trip more than a log that
came through the service's own publish path (`python -m bench.plain` measures it).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Final, Protocol

import redis.asyncio as aioredis
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import NoScriptError

from ._errors import CONNECTION_ERRORS, never_sent
from .envelope import Envelopes
from .keys import KeySpace
from .script import PLAIN_SCRIPT

log = logging.getLogger("service.broker")

# Seconds a claim lives after the last copy of its payload: longer than any two gateways'
# distance in reading the channel (Redis drops a subscriber that falls 32 MB behind).
CLAIM_TTL: Final = 10
# This gateway's counts outlive the claims: it never counts 1 again while a claim lives (that
# copy would be taken for one already stored).
_COUNT_TTL: Final = CLAIM_TTL + 5
MAX_COUNTED: Final = 100_000  # payloads counted at most (then the oldest are forgotten)
MAX_PENDING: Final = 10_000  # logs waiting to be stored at most (then delivered unstored)
PIPELINE: Final = 256  # logs per round trip
# A store is safe to resend while its claim lives (a second run stores nothing): it is
# retried that long, through a Redis restart or a short stall, then given up.
RETRY_FOR: Final = CLAIM_TTL - 2


class PlainEvents(Protocol):
    def on_plain(self, stored: int, claimed: int) -> None:
        """A pipeline's logs: how many this gateway stored, how many another had."""

    def on_unstored(self, room: str, data: bytes, reason: str) -> None:
        """`data` was not stored (`reason`), or, for "unknown", may have been: in that case it
        reaches the streams by the catch-up after the subscription is back, if it was."""


class PlainStore:
    def __init__(
        self,
        client: aioredis.Redis,
        keys: KeySpace,
        history_max: int,
        history_ttl: int,
        envelopes: Callable[[], Envelopes | None],
        events: PlainEvents,
        *,
        script: str = PLAIN_SCRIPT,
        transient: tuple[type[BaseException], ...] = CONNECTION_ERRORS,
    ) -> None:
        self._client = client
        # The Cluster's broker passes SPUBLISH's variant, and its own transient errors.
        self._script = script
        self._transient = transient
        self._sha = hashlib.sha1(script.encode()).hexdigest()  # noqa: S324 (Redis' name)
        self._keys = keys
        self._limits = (history_max, history_ttl)
        self._envelopes = envelopes
        self._events = events
        self._pending: deque[tuple[str, str, int, bytes]] = deque()
        # digest -> (copies received, when to forget); insertion order is last-seen order.
        self._counts: dict[bytes, tuple[int, float]] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # nothing queued or being stored
        self._idle.set()
        self._backoff = ExponentialWithJitterBackoff(cap=1.0, base=0.05)

    def add(self, room: str, channel: bytes, payload: bytes, log: bytes) -> None:
        """Store `log` (`payload` as validated, received on `channel`), in turn."""
        if len(self._pending) >= MAX_PENDING:
            self._events.on_unstored(room, log, "backlog")
            return
        h = hashlib.blake2b(channel, digest_size=16)
        h.update(b"\0")
        h.update(payload)
        digest = h.digest()
        self._pending.append((room, digest.hex(), self._count(digest), log))
        self._idle.clear()
        self._wake.set()

    def _count(self, digest: bytes) -> int:
        now = time.monotonic()
        counts = self._counts
        while counts:
            oldest = next(iter(counts))
            if counts[oldest][1] > now and len(counts) < MAX_COUNTED:
                break
            del counts[oldest]
        prior = counts.pop(digest, None)
        copies = prior[0] + 1 if prior is not None else 1
        counts[digest] = (copies, now + _COUNT_TTL)
        return copies

    async def run(self) -> None:
        """The writer task: drains what `add` queued, a pipeline at a time, until cancelled."""
        pending = self._pending
        while True:
            await self._wake.wait()
            self._wake.clear()
            while pending:
                batch = [pending.popleft() for _ in range(min(PIPELINE, len(pending)))]
                await self._store(batch)
            self._idle.set()

    async def drained(self) -> None:
        """Until everything handed over so far is stored (or given up on): for a shutdown
        that loses nothing it received."""
        await self._idle.wait()

    async def _store(self, batch: list[tuple[str, str, int, bytes]]) -> None:
        envelopes = self._envelopes()
        if envelopes is None:  # cannot happen: nothing is received before the secret is read
            self._unstored(batch, "no_secret")
            return
        replies: list[object] = []
        maybe_ran = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RETRY_FOR
        attempt = 0
        while True:
            attempt += 1
            try:
                replies = await self._run_pipeline(batch, envelopes.secret)
                if any(isinstance(r, NoScriptError) for r in replies):
                    # Redis restarted (or flushed its scripts): nothing of it ran. Load it
                    # once and send the batch again, which the claims make harmless.
                    await self._client.script_load(self._script)
                    replies = await self._run_pipeline(batch, envelopes.secret)
                break
            except self._transient as exc:
                maybe_ran = maybe_ran or not never_sent(exc)
                delay = self._backoff.compute(attempt)
                if loop.time() + delay >= deadline:
                    reason = "unknown" if maybe_ran else "unavailable"
                    log.warning("plain PUBLISH logs %s (%d): %s", reason, len(batch), exc)
                    self._unstored(batch, reason)
                    return
                await asyncio.sleep(delay)
        stored = claimed = 0
        for (room, _, _, data), reply in zip(batch, replies, strict=True):
            if isinstance(reply, bytes):
                stored += 1
            elif reply is None:
                claimed += 1
            else:
                log.warning("plain PUBLISH log not stored: room=%s: %s", room, reply)
                self._events.on_unstored(room, data, "error")
        self._events.on_plain(stored, claimed)

    async def _run_pipeline(
        self, batch: list[tuple[str, str, int, bytes]], secret: bytes
    ) -> list[object]:
        """One `EVALSHA` per log, in one round trip. Not redis-py's `Script` in a pipeline: that
        sends a `SCRIPT EXISTS` first, a second round trip for every batch."""
        history_max, history_ttl = self._limits
        keys = self._keys
        async with self._client.pipeline(transaction=False) as pipe:
            for room, digest, copies, data in batch:
                # `execute_command`, not `evalsha`: redis-py's cluster pipeline refuses the
                # method (a script may name keys on several nodes); these name one slot.
                pipe.execute_command(
                    "EVALSHA",
                    self._sha,
                    3,
                    keys.history(room),
                    keys.channel(room),
                    keys.plain(room, digest),
                    history_max,
                    history_ttl,
                    secret,
                    copies,
                    CLAIM_TTL,
                    data,
                )
            replies: list[object] = await pipe.execute(raise_on_error=False)
        return replies

    def _unstored(self, batch: list[tuple[str, str, int, bytes]], reason: str) -> None:
        for room, _, _, data in batch:
            self._events.on_unstored(room, data, reason)
