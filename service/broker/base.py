"""The broker interface: the only code that talks to the transport (Redis, or memory).

Both implementations deliver every message to the hub as a decoded `Message`, keep a bounded
history per room with ids of one shape (`<ms>-<seq>`), and report their state for readiness.
"""

from __future__ import annotations

import abc
import asyncio
import enum
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ..frames import Message, Rejected, decode
from ..hub import Hub
from ..ids import StreamKey, parse_id
from ..metrics import Metrics
from ..rooms import room_from_channel

log = logging.getLogger("service.broker")

# Channels whose room is remembered, at most (then forgotten all at once, and relearnt).
_CHANNEL_CACHE = 8192

# One retained log: its stream id and its one-line JSON.
HistoryEntry = tuple[str, bytes]


@dataclass(frozen=True, slots=True)
class Published:
    ids: list[str]
    replayed: bool  # the key had been used for these logs: nothing new was stored


class KeyReused(Exception):
    """An idempotency key sent again with other logs than the first time."""


def fingerprint(body: bytes) -> str:
    """What an idempotent publish is compared by: the request body as the client sent it.

    Not the logs as the service stores them: a log without `timestamp` gets a new one on every
    retry, and that retry is still the same publish.
    """
    return hashlib.sha256(body).hexdigest()[:32]


class BrokerState(enum.Enum):
    STARTING = "starting"
    LIVE = "live"
    DOWN = "down"
    CLOSED = "closed"


class BrokerUnavailable(Exception):
    """The broker cannot serve this call now: nothing was stored or read."""


@dataclass(frozen=True, slots=True)
class Window:
    """What history holds for a room, to tell a resuming client whether it lost anything."""

    oldest: str | None
    newest: str | None
    # Whether history ever dropped a log to stay within HISTORY_MAX.
    trimmed: bool

    def covers(self, after: StreamKey) -> bool:
        """False when logs after `after` may have been trimmed: it points before the oldest."""
        if not self.trimmed or self.oldest is None:
            return True
        oldest = parse_id(self.oldest)
        return oldest is None or after >= oldest


class Broker(abc.ABC):
    def __init__(self, hub: Hub, metrics: Metrics, max_message_bytes: int) -> None:
        self.hub = hub
        self.metrics = metrics
        self.max_message_bytes = max_message_bytes
        self.state = BrokerState.STARTING
        self.reason = "starting"
        self._live = asyncio.Event()
        # Valid channel -> its room: parsing and checking the name costs more than the lookup.
        self._channel_rooms: dict[bytes, str] = {}

    @property
    def ready(self) -> bool:
        return self.state is BrokerState.LIVE

    def _set_state(self, state: BrokerState, reason: str) -> None:
        self.state = state
        self.reason = reason
        self.metrics.broker_up.set(1 if state is BrokerState.LIVE else 0)
        if state is BrokerState.LIVE:
            self._live.set()
        else:
            self._live.clear()

    async def wait_live(self) -> None:
        """Until the subscription is live (start-up, or after an outage)."""
        await self._live.wait()

    def deliver(self, channel: bytes, payload: bytes) -> Message | None:
        """Decode one channel message and hand it to the hub; bad payloads are counted, skipped."""
        self.metrics.broker_messages.inc()
        return self._deliver(channel, payload)

    def _deliver(self, channel: bytes, payload: bytes) -> Message | None:
        """`deliver` without counting the message: for readers that add a batch's count once."""
        room = self._channel_rooms.get(channel)
        if room is None:
            room = room_from_channel(channel)
            if room is None:
                self._reject("bad_channel", channel, payload)
                return None
            if len(self._channel_rooms) >= _CHANNEL_CACHE:
                self._channel_rooms.clear()
            self._channel_rooms[channel] = room
        if not self.hub.subscribers(room):
            # Every instance (and worker) sees every room's logs; only those with a stream of
            # the room decode it. A bad payload is counted where someone would receive it.
            return None
        try:
            msg = decode(room, payload, self.max_message_bytes)
        except Rejected as exc:
            self._reject(exc.reason, channel, payload)
            return None
        if self.hub.dispatch(msg) and msg.key is not None:
            # Once per message, not per stream: most streams are written right here.
            self.metrics.latency.observe(max(time.time() - msg.key[0] / 1000, 0.0))
        return msg

    def _reject(self, reason: str, channel: bytes, payload: bytes) -> None:
        self.metrics.broker_invalid.labels(reason).inc()
        log.warning(
            "skipped broker message: reason=%s channel=%r size=%d head=%r",
            reason,
            channel[:140],
            len(payload),
            payload[:80],
        )

    @abc.abstractmethod
    async def start(self) -> None:
        """Begin delivering messages to the hub (returns once the reader task is started)."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def publish(self, room: str, logs: Sequence[bytes]) -> list[str]:
        """Store and deliver each one-line JSON log atomically; returns their stream ids."""

    @abc.abstractmethod
    async def publish_once(
        self, room: str, logs: Sequence[bytes], key: str, seen: str
    ) -> Published:
        """`publish`, at most once per `key` (for `IDEMPOTENCY_TTL`): a retry of a publish
        whose answer was lost gets the first one's ids back instead of storing the logs again.
        `seen` is the request's `fingerprint`; raises `KeyReused` when the key came with
        another one."""

    @abc.abstractmethod
    async def history(self, room: str, after: str | None, limit: int) -> list[HistoryEntry]:
        """Retained logs after `after` (all when None), oldest first, at most `limit`."""

    @abc.abstractmethod
    async def last(self, room: str, count: int) -> list[HistoryEntry]:
        """The newest `count` retained logs, oldest first."""

    @abc.abstractmethod
    async def window(self, room: str) -> Window: ...

    @abc.abstractmethod
    async def room_exists(self, room: str) -> bool: ...
