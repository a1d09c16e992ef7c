"""Redis Sentinel for the Redis broker: a pool that finds the primary through the sentinels,
and a watcher that follows a failover the moment it is announced.

redis-py's Sentinel support (`redis.asyncio.sentinel`, relied on as of 8.1) asks a sentinel for
the primary on every (re)connect, and nothing more: it does not listen for `+switch-master`
(redis-py issue #3867), and a `SENTINEL FAILOVER` leaves the old primary a writable primary
for ~10 s, with redis-py's pooled and pub/sub connections still on it (RESEARCH-SCALEOUT.md
§1.4). So here:

- `SentinelLink.watch` subscribes to `+switch-master` on any reachable sentinel (retrying),
  and on a switch of our service closes every pooled connection to another primary, the
  subscription's included: the broker's reader resubscribes on the new primary and catches up
  from history, as after any lost subscription. A connect that finds the primary moved
  (`BlockingSentinelPool.on_move`) does the same.
- `Switches` remembers the last switch heard: its old primary is refused as "the primary" for
  a while, whatever a sentinel that has not heard of the failover yet still says, and among
  the sentinels' answers the highest config epoch wins.
- `PrimaryConnection` checks `ROLE` on connect: a connection is never made to a replica, nor
  kept to a primary that a switch heard meanwhile left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.connection import BlockingConnectionPool, SSLConnection, parse_url
from redis.asyncio.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
)
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from ..settings import Settings

log = logging.getLogger("service.broker")

Address = tuple[str, int]

SWITCH_CHANNEL: Final = "+switch-master"
# How long the old primary of a switch heard is refused even when a sentinel still names it:
# the other sentinels learn the new configuration within a few hello periods (2 s each), and
# Sentinel turns the old primary into a replica ~10 s after a SENTINEL FAILOVER.
SWITCH_MEMORY: Final = 30.0
SENTINEL_TIMEOUT: Final = 1.0  # seconds to connect to / hear from one sentinel
WATCH_READ: Final = 1.0  # seconds one read of the watcher's subscription waits
WATCH_IDLE: Final = 5.0  # seconds of silence after which the watcher PINGs its sentinel


class NoPrimary(MasterNotFoundError):
    """No sentinel names a usable primary. Raised before any command was sent: its message says
    "connecting to", which `_errors.never_sent` reads as "surely not stored" (503, not 504)."""


@dataclass
class Switches:
    """What the `+switch-master` announcements of our service said, and how they weigh on the
    sentinels' answers (pure: `choose` is given the states and the time)."""

    service: str
    announced: Address | None = None  # the primary of the last switch heard
    demoted: Address | None = None  # the primary it replaced
    heard_at: float = 0.0  # monotonic time of that switch

    def heard(self, message: bytes | str) -> tuple[Address | None, Address] | None:
        """A `+switch-master` message (`<name> <old-ip> <old-port> <new-ip> <new-port>`):
        (old, new) when it is a switch of our service, else None."""
        text = message.decode() if isinstance(message, bytes) else message
        parts = text.split()
        if len(parts) != 5 or parts[0] != self.service:
            return None
        try:
            old = (parts[1], int(parts[2]))
            new = (parts[3], int(parts[4]))
        except ValueError:
            return None
        self.note(old, new)
        return old, new

    def note(self, old: Address | None, new: Address) -> None:
        """A switch from `old` to `new`, heard or found out."""
        self.announced, self.demoted = new, old if old != new else None
        self.heard_at = time.monotonic()

    def choose(self, states: Sequence[Mapping[str, Any]], now: float) -> Address | None:
        """The primary among what the sentinels answered for our service (their SENTINEL
        MASTERS entries): not down, not the old primary of a recent switch, the highest config
        epoch first, then the address announced, then the one most sentinels name."""
        recent = now - self.heard_at < SWITCH_MEMORY
        votes: dict[Address, tuple[int, int]] = {}  # address → (best epoch, sentinels)
        for state in states:
            if not state.get("is_master") or state.get("is_sdown") or state.get("is_odown"):
                continue
            address = (str(state["ip"]), int(state["port"]))
            if recent and address == self.demoted:
                continue
            epoch, count = votes.get(address, (-1, 0))
            votes[address] = (max(epoch, int(state.get("config-epoch", 0))), count + 1)
        if not votes:
            return None

        def rank(address: Address) -> tuple[int, bool, int]:
            epoch, count = votes[address]
            return epoch, address == self.announced, count

        return max(votes, key=rank)


class WatchedSentinel(Sentinel):
    """redis-py's `Sentinel`, asking every sentinel at once and choosing with `Switches`
    (redis-py's own takes the first sentinel's answer, stale or not)."""

    def __init__(self, switches: Switches, sentinels: Sequence[Address], **kwargs: Any) -> None:
        super().__init__(list(sentinels), **kwargs)  # type: ignore[no-untyped-call]
        self.switches = switches

    async def discover_master(self, service_name: str) -> Address:
        async def ask(sentinel: aioredis.Redis) -> Mapping[str, Any] | None:
            masters: Any = await sentinel.sentinel_masters()
            state: Mapping[str, Any] | None = masters.get(service_name)
            return state

        answers = await asyncio.gather(
            *(ask(sentinel) for sentinel in self.sentinels), return_exceptions=True
        )
        states = [a for a in answers if a is not None and not isinstance(a, BaseException)]
        chosen = self.switches.choose(states, time.monotonic())
        if chosen is None:
            errors = [f"{type(a).__name__}: {a}" for a in answers if isinstance(a, BaseException)]
            detail = f" ({'; '.join(errors[:3])})" if errors else ""
            raise NoPrimary(
                f"Error connecting to the primary of {service_name!r}: "
                f"{len(states)} of {len(answers)} sentinels answered, none names a usable "
                f"primary{detail}"
            )
        return chosen


class PrimaryConnection(SentinelManagedConnection):
    """A connection to the primary that checks, once connected, that it is one (`ROLE`): a
    sentinel's stale answer never gets a publish acknowledged by a replica."""

    async def connect_to(self, address: Address) -> None:
        await super().connect_to(address)  # type: ignore[no-untyped-call]
        try:
            await self.send_command("ROLE")
            reply = await self.read_response()
        except NoPermissionError:
            reply = [b"master"]  # a user without +role (docs/sentinel.md): the sentinels' word
        role = reply[0] if isinstance(reply, list) and reply else reply
        if role not in (b"master", "master"):
            await self.disconnect()
            raise RedisConnectionError(
                f"Error connecting to {address[0]}:{address[1]}: it is a {role!r}, not the "
                "primary (a failover under way)"
            )
        current = self.connection_pool.master_address
        if current is not None and tuple(current) != tuple(address):
            # A switch was heard while this connect was under way: not a connection to keep.
            await self.disconnect()
            raise RedisConnectionError(
                f"Error connecting to {address[0]}:{address[1]}: the primary moved to "
                f"{current[0]}:{current[1]} meanwhile"
            )


class PrimarySSLConnection(PrimaryConnection, SSLConnection):
    pass


class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool that queues for a connection as the one-server pool does (_pool.py),
    and tells `on_move` when a connect finds the primary elsewhere than the last one did (a
    switch not heard yet: the subscription may still be on the old primary)."""

    on_move: Callable[[Address, Address], None] | None = None

    async def get_master_address(self) -> Address:
        previous = self.master_address
        address: Address = await super().get_master_address()  # type: ignore[no-untyped-call]
        if previous is not None and tuple(previous) != address and self.on_move is not None:
            self.on_move((str(previous[0]), int(previous[1])), address)
        return address

    async def disconnect_except(self, primary: Address) -> None:
        """Close every connection, idle or in use (the subscription's too), that is not to
        `primary`: a command under way there fails rather than being acknowledged by it."""
        connections = [*self._available_connections, *self._in_use_connections]
        stale = [
            c
            for c in connections
            if (getattr(c, "host", None), getattr(c, "port", None)) != primary
        ]
        await asyncio.gather(*(c.disconnect() for c in stale), return_exceptions=True)


def sentinel_options(settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    """(connection options of the primary's connections, of the sentinels' connections) from
    REDIS_URL, which then carries only the scheme, the password (and user) and the db."""
    data: dict[str, Any] = {}
    tls = False
    if settings.redis_url:
        parsed = parse_url(settings.redis_url)
        tls = urlsplit(settings.redis_url).scheme == "rediss"
        for name in ("username", "password", "db"):
            if name in parsed:
                data[name] = parsed[name]
    tls_options = settings.redis_options if tls else {}
    data.update(tls_options)
    data["connection_class"] = PrimarySSLConnection if tls else PrimaryConnection
    sentinels: dict[str, Any] = {
        "socket_connect_timeout": SENTINEL_TIMEOUT,
        "socket_timeout": SENTINEL_TIMEOUT,
        "retry": Retry(NoBackoff(), retries=0),
        "protocol": 2,
        **({"ssl": True, **tls_options} if tls else {}),
    }
    return data, sentinels


class SentinelLink:
    """The sentinels of one broker: its pool (`pool`), and the watcher of failovers."""

    def __init__(self, settings: Settings, **pool_options: Any) -> None:
        self.service = settings.redis_sentinel_master
        self.switches = Switches(self.service)
        data, sentinel_kwargs = sentinel_options(settings)
        self._sentinel_kwargs = sentinel_kwargs
        self.sentinel = WatchedSentinel(
            self.switches, settings.redis_sentinels, sentinel_kwargs=sentinel_kwargs
        )
        self.pool = BlockingSentinelPool(  # type: ignore[no-untyped-call]
            self.service, self.sentinel, is_master=True, **data, **pool_options
        )
        self.pool.on_move = self._moved
        self._addresses = settings.redis_sentinels
        self._backoff = ExponentialWithJitterBackoff(cap=2.0, base=0.05)
        self._pending: set[asyncio.Task[None]] = set()

    async def switch(self, new: Address) -> None:
        """The primary is now `new`: every connection elsewhere goes. The subscription's
        loss makes the broker's reader resubscribe there and catch up, as after any loss."""
        self.pool.master_address = new  # the next connects find it there: no second switch
        await self.pool.disconnect_except(new)

    def _moved(self, old: Address, new: Address) -> None:
        # Inside a connect: the switch runs beside it, not within it.
        log.warning("%s found at %s, no longer %s", self.service, _show(new), _show(old))
        self.switches.note(old, new)
        task = asyncio.get_running_loop().create_task(self.switch(new))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def watch(self) -> None:
        """Forever: follow `+switch-master` on one reachable sentinel after another. On (re)
        subscribing, a switch missed while no sentinel was heard is found by asking them."""
        failures = 0
        turn = 0
        while True:
            host, port = self._addresses[turn % len(self._addresses)]
            turn += 1
            client = aioredis.Redis(host=host, port=port, **self._sentinel_kwargs)
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(SWITCH_CHANNEL)
                failures = 0
                await self._missed()
                await self._follow(pubsub, f"{host}:{port}")
            except Exception as exc:  # the watcher must outlive anything a sentinel does
                if not isinstance(exc, (RedisError, OSError)):
                    log.exception("the sentinel watcher failed unexpectedly")
                failures += 1
                delay = self._backoff.compute(failures)
                log.info(
                    "sentinel %s:%d not followed (%s: %s); next one in %.2fs",
                    host, port, type(exc).__name__, exc, delay,
                )  # fmt: skip
                await asyncio.sleep(delay)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def _follow(self, pubsub: PubSub, sentinel: str) -> None:
        """The switches one sentinel announces, until its connection fails or it stalls: a
        silent subscription is asked (PING) after WATCH_IDLE, as the broker's reader does."""
        loop = asyncio.get_running_loop()
        heard, probed = loop.time(), None
        while True:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=WATCH_READ)
            now = loop.time()
            if msg is None:
                if probed is None and now - heard >= WATCH_IDLE:
                    await pubsub.ping()
                    probed = now
                elif probed is not None and now - probed >= SENTINEL_TIMEOUT * 2:
                    raise RedisTimeoutError(f"no answer to a PING within {SENTINEL_TIMEOUT * 2}s")
                continue
            heard, probed = now, None
            switch = self.switches.heard(msg["data"]) if msg["type"] == "message" else None
            if switch is not None:
                log.warning(
                    "sentinel %s: %s switched from %s to %s",
                    sentinel, self.service, _show(switch[0]), _show(switch[1]),
                )  # fmt: skip
                await self.switch(switch[1])

    async def _missed(self) -> None:
        current = self.pool.master_address
        if current is None:
            return  # nothing connected yet: the first connect asks the sentinels anyway
        try:
            primary = await self.sentinel.discover_master(self.service)
        except RedisError:
            return
        old = (str(current[0]), int(current[1]))
        if primary != old:
            log.warning("%s is now at %s (a switch not heard)", self.service, _show(primary))
            self.switches.note(old, primary)
            await self.switch(primary)

    async def aclose(self) -> None:
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)
        await self.sentinel.aclose()


def _show(address: Address | None) -> str:
    return "?" if address is None else f"{address[0]}:{address[1]}"
