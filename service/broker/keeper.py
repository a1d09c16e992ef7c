"""SUBSCRIBE_MODE=rooms: the plain PUBLISH keepers, so that a plain `PUBLISH room:R:logs` is
stored "whether or not any stream watches the room" (DESIGN.md, "Plain PUBLISH, replayable").

A per-room subscriber hears only the rooms it has streams of, so a plain log sent to an
unwatched room would reach no gateway. Up to PLAIN_KEEPERS (2) gateway processes of a
deployment hold a lease (`roomlogs:plain-keeper:<n>`, `SET NX PX`, renewed by its holder)
and, while they hold it, keep a `PSUBSCRIBE room:*:logs` on a connection of their own. They
drop the service's own envelopes at once and store the plain logs with the same claim
protocol as every gateway (plain.py). A keeper counts copies in a `PlainStore` of its own,
apart from the one of its per-room connection: each connection hears a channel's messages in
Redis' one order, so each is one more claimant and a log heard on both is stored once, not
counted twice.

The cost is Redis' egress to the keepers: every message of every room, PLAIN_KEEPERS times
over (docs/subscriptions.md weighs it). Two by default, so that one gateway's crash loses
nothing: the other keeps storing while the lease expires and another gateway takes the free
slot over. One halves that egress (Redis then sends each log twice whatever the number of
gateways) and leaves a window of up to LEASE_MS after a keeper's crash; zero stores no plain
log of an unwatched room (for deployments whose publishers all go through the service).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import redis.asyncio as aioredis
from redis.backoff import ExponentialWithJitterBackoff

from . import _batch_read
from .envelope import is_envelope
from .keys import KeySpace
from .plain import PlainStore

log = logging.getLogger("service.broker")

LEASE_KEY: Final = "roomlogs:plain-keeper:{}"
LEASE_MS: Final = 10_000  # a crashed keeper's slot is free again after this long
RENEW_EVERY: Final = LEASE_MS / 3 / 1000  # seconds; also how often a free slot is looked for
READ_TIMEOUT: Final = 1.0

# Renew or release the lease only while it is still this keeper's.
_RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

Deliver = Callable[[Sequence[tuple[bytes, bytes]]], None]


class PlainKeeper:
    def __init__(
        self,
        client: aioredis.Redis,
        keys: KeySpace,
        store: PlainStore,
        deliver: Deliver,
        secret_known: Callable[[], Awaitable[object]],
        keepers: int = 2,
    ) -> None:
        self.store = store
        self._keepers = keepers  # PLAIN_KEEPERS
        self._client = client
        self._keys = keys
        self._deliver = deliver  # plain logs only: validated, then handed to `store`
        self._secret_known = secret_known
        self._token = uuid.uuid4().hex
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._backoff = ExponentialWithJitterBackoff(cap=5.0, base=0.1)
        self.holding: str | None = None  # the lease key held now (metrics, tests)
        self.held = asyncio.Event()  # set while a lease is held and the PSUBSCRIBE confirmed
        # Set once the first look for a free lease is over (held and confirmed, or none
        # free, or Redis failed it): the broker reports itself live only after that, so a
        # plain PUBLISH right after start-up is not missed for want of a keeper.
        self.settled = asyncio.Event()
        self._stopped = False

    def stop(self) -> None:
        """Before the task is cancelled: redis-py can swallow a cancellation that lands inside
        `get_message()`, so the loops also end on this, within one READ_TIMEOUT."""
        self._stopped = True

    async def run(self) -> None:
        """Until cancelled: take a free lease when there is one, and keep while it is held."""
        writer = asyncio.create_task(self.store.run(), name="roomlogs-keeper-plain-writer")
        failures = 0
        try:
            while not self._stopped:
                await self._secret_known()  # plain logs can be stored
                try:
                    key = await self._acquire()
                    if key is None:
                        self.settled.set()  # others keep
                        await asyncio.sleep(RENEW_EVERY)
                        continue
                    failures = 0
                    await self._keep(key)
                except Exception as exc:  # the keeper outlives anything Redis does to it
                    self.settled.set()  # readiness is the subscription's, not the keeper's
                    failures += 1
                    delay = self._backoff.compute(failures)
                    log.warning("plain PUBLISH keeper lost (%s); retrying in %.2fs", exc, delay)
                    await asyncio.sleep(delay)
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    async def _acquire(self) -> str | None:
        for n in range(self._keepers):
            key = LEASE_KEY.format(n)
            if await self._client.set(key, self._token, nx=True, px=LEASE_MS):
                return key
        return None

    async def _keep(self, key: str) -> None:
        loop = asyncio.get_running_loop()
        pubsub = self._client.pubsub()
        try:
            await pubsub.psubscribe(self._keys.pattern)
            self.holding = key
            log.info("plain PUBLISH keeper: holding %s", key)
            renew_at = loop.time() + RENEW_EVERY
            while not self._stopped:
                msg: dict[str, Any] | None = await pubsub.get_message(timeout=READ_TIMEOUT)
                if msg is not None:
                    self._take(pubsub, msg)
                if loop.time() >= renew_at:
                    if not await self._renew(keys=[key], args=[self._token, LEASE_MS]):
                        log.warning("plain PUBLISH keeper: lease %s taken over", key)
                        return
                    renew_at = loop.time() + RENEW_EVERY
        finally:
            self.holding = None
            self.held.clear()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await self._release(keys=[key], args=[self._token])
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _take(self, pubsub: Any, msg: dict[str, Any]) -> None:
        batch: list[tuple[bytes, bytes]] = []
        if msg["type"] == "pmessage":
            batch.append((msg["channel"], msg["data"]))
        elif msg["type"] == "psubscribe":
            self.held.set()
            self.settled.set()
        reader = _batch_read.buffered_reader(pubsub)
        if reader is not None:
            try:
                while (control := _batch_read.take_until_control(reader, batch)) is not None:
                    if control[0] == b"psubscribe":
                        self.held.set()
                        self.settled.set()
            finally:
                self._hand_over(batch)
        else:
            self._hand_over(batch)

    def _hand_over(self, batch: list[tuple[bytes, bytes]]) -> None:
        plain = [(channel, payload) for channel, payload in batch if not is_envelope(payload)]
        if plain:
            self._deliver(plain)
