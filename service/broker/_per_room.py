"""SUBSCRIBE_MODE=rooms on one Redis (or Sentinel's primary): the wire side of `Interest`.

The reader (redis.py `_read`) keeps reading the one subscription connection; `write` runs beside
it on the same connection and sends what `Interest.take()` asks for, as soon as `subscribe`
sets the event it waits on. docs/subscriptions.md tells the whole story.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Final

from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError

from .base import BrokerUnavailable
from .interest import BATCH, Interest, batches

# How long a new stream waits for its rooms' SUBSCRIBE confirmation before it is refused
# (its `broker_unavailable` ending); how long the writer lets Redis answer one batch of a
# resubscribe before it sends the next anyway (the liveness probe judges stalls); the PING
# sent after a connection's first SUBSCRIBEs, answered after all their confirmations; how
# long the first live waits for the plain PUBLISH keeper to settle (keeper.py).
LISTEN_TIMEOUT: Final = 5.0
BATCH_WAIT: Final = 10.0
LIVE_MARKER: Final = b"roomlogs-subscribed"
KEEPER_WAIT: Final = 3.0


@dataclass(slots=True)
class Link:
    """One connection: its writer task, and the rooms whose subscription ended while a stream
    wanted them again (an UNSUBSCRIBE crossed a reopen): once subscribed again they are caught
    up from history after the time (ms) it was sent."""

    writer: asyncio.Task[None] | None = None
    unsubscribed_at: dict[str, int] = field(default_factory=dict)
    catch_up: dict[str, int] = field(default_factory=dict)


async def send(pubsub: PubSub, *args: str | bytes) -> None:
    """A command on the subscription connection, its answer left to the reader. Not
    `PubSub.execute_command`: unsubscribed (no `PubSub.channels`, as in rooms mode) it runs a
    health check that reads the socket itself, under the reader's feet."""
    conn = pubsub.connection
    if conn is None:
        raise RedisConnectionError("the subscription connection is closed")
    await conn.send_command(*args, check_health=False)


async def write(
    pubsub: PubSub,
    interest: Interest,
    changed: asyncio.Event,
    channel: Callable[[str], str],
    link: Link,
) -> None:
    """The writer task of one connection, until it fails or is cancelled: UNSUBSCRIBEs, then
    SUBSCRIBEs, in batches; after the first round, the `LIVE_MARKER` PING."""
    first = True
    while True:
        if not first:
            await changed.wait()
        changed.clear()  # before `take`: a change after it wakes this loop again
        changes = interest.take()
        if changes.unsubscribe:
            sent = time.time_ns() // 1_000_000
            for room in changes.unsubscribe:
                link.unsubscribed_at[room] = sent
        for rooms in batches(changes.unsubscribe):
            await send(pubsub, "UNSUBSCRIBE", *map(channel, rooms))
        several = len(changes.subscribe) > BATCH
        for rooms in batches(changes.subscribe):
            await send(pubsub, "SUBSCRIBE", *map(channel, rooms))
            if several:  # a resubscribe of many: Redis answers a batch before the next
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(BATCH_WAIT):
                        await interest.until_subscribed(rooms)
        if first:
            # Answered after every confirmation above: the reader then catches up what the
            # rooms missed while the connection was down, and the broker is live.
            await send(pubsub, "PING", LIVE_MARKER)
            first = False


async def listening(interest: Interest, rooms: Collection[str]) -> None:
    """`Broker.listening`: until Redis confirmed `rooms`, bounded by LISTEN_TIMEOUT."""
    try:
        async with asyncio.timeout(LISTEN_TIMEOUT):
            await interest.until_subscribed(rooms)
    except TimeoutError:
        raise BrokerUnavailable(
            f"redis did not confirm the subscription of {len(rooms)} room(s) within "
            f"{LISTEN_TIMEOUT:.0f}s"
        ) from None
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        raise BrokerUnavailable("the broker closed") from None  # `close` ended the wait
