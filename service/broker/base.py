"""The broker interface: the only code that talks to the transport (Redis, or memory).

A broker is told what to listen to (`subscribe` / `unsubscribe`, from the hub's room events)
and hands what arrives to its `BrokerEvents` (the delivery step), undecoded: it knows neither
the hub nor the metrics. Both implementations keep a bounded history per room with ids of one
shape (`<ms>-<seq>`) and report their state for readiness.
"""

from __future__ import annotations

import abc
import asyncio
import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..ids import StreamKey, parse_id
from .envelope import Envelopes
from .script import Published

# One retained log: its stream id and its one-line JSON.
HistoryEntry = tuple[str, bytes]


class BrokerState(enum.Enum):
    STARTING = "starting"
    LIVE = "live"
    DOWN = "down"
    CLOSED = "closed"


class BrokerUnavailable(Exception):
    """The broker cannot serve this call now: nothing was stored or read."""


class PublishOutcomeUnknown(Exception):
    """A publish reached the broker, or may have, but its answer did not come back: the logs
    may or may not be stored. A retry with the same idempotency key settles it."""


class BrokerEvents(Protocol):
    """What a broker reports; the app's `Delivery` implements it."""

    def on_messages(self, batch: Sequence[tuple[bytes, bytes]]) -> None:
        """(channel, payload) pairs as they came off the subscription, in order."""

    def on_entry(self, room: str, stream_id: str, data: bytes) -> None:
        """One stored log of `room` with its id (the embedded publish, a catch-up)."""

    def position(self, room: str) -> StreamKey | None:
        """The newest id delivered to `room`'s streams: where a catch-up resumes."""

    def on_state(self, state: BrokerState, reason: str, *, recovered: bool = False) -> None:
        """The subscription went live (`recovered` after an outage), down, or closed."""

    def on_gap(self, room: str, after: str, resumed_from: str | None) -> None:
        """A catch-up found logs after `room`'s position trimmed unsent: its streams are told
        before the logs from `resumed_from` on."""

    def on_plain(self, stored: int, claimed: int) -> None:
        """Plain PUBLISH logs handed to `store_plain`: stored here, or by another gateway."""

    def on_unstored(self, room: str, data: bytes, reason: str) -> None:
        """A plain PUBLISH log was not stored (`reason`): deliver it live without an id. For
        "unknown" it may have been, and a catch-up delivers it if so."""


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
    def __init__(self, events: BrokerEvents) -> None:
        self.events = events
        self.state = BrokerState.STARTING
        self.reason = "starting"
        self._live = asyncio.Event()
        # Rooms with a local stream, as the hub reported them: what a catch-up walks.
        self.rooms: set[str] = set()
        # What tells the service's envelopes on the channel from a plain PUBLISH (Redis only).
        self.envelopes: Envelopes | None = None
        # Whether one subscription covers every room while the broker is live (Redis'
        # `PSUBSCRIBE`): then what it delivered is all there is (see `Delivery.known_newest`).
        self.one_subscription = False

    @property
    def ready(self) -> bool:
        return self.state is BrokerState.LIVE

    def _set_state(self, state: BrokerState, reason: str, *, recovered: bool = False) -> None:
        if self.state is BrokerState.CLOSED:
            return  # closed for good: a reader still winding down cannot reopen it
        self.state = state
        self.reason = reason
        self.events.on_state(state, reason, recovered=recovered)
        if state is BrokerState.LIVE:
            self._live.set()
        else:
            self._live.clear()

    async def wait_live(self) -> None:
        """Until the subscription is live (start-up, or after an outage)."""
        await self._live.wait()

    def subscribe(self, rooms: Collection[str]) -> None:
        """These rooms gained their first local stream; called before their replay is read."""
        self.rooms.update(rooms)

    def unsubscribe(self, rooms: Collection[str]) -> None:
        """These rooms lost their last local stream."""
        self.rooms.difference_update(rooms)

    async def listening(self, rooms: Collection[str]) -> None:
        """Until live delivery of these (just subscribed) rooms is confirmed: a stream's replay
        is read after this, so that no log falls between the replay and live. At once where
        one subscription covers every room (`SUBSCRIBE_MODE=pattern`, memory); a per-room
        subscriber waits for its confirmation, bounded, and raises `BrokerUnavailable`."""
        return

    def store_plain(self, room: str, channel: bytes, payload: bytes, log: bytes) -> None:
        """Store a plain PUBLISH's log (`payload` as received, `log` as validated) once, and
        publish its envelope; only a broker with a channel receives them."""
        raise NotImplementedError

    @abc.abstractmethod
    async def start(self) -> None:
        """Begin delivering messages (returns once the reader task is started)."""

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
        `seen` is the request's fingerprint; raises `KeyReused` when the key came with
        another one."""

    @abc.abstractmethod
    async def history(self, room: str, after: str | None, limit: int) -> list[HistoryEntry]:
        """Retained logs after `after` (all when None), oldest first, at most `limit`."""

    @abc.abstractmethod
    async def last(self, room: str, count: int, *, before: str | None = None) -> list[HistoryEntry]:
        """The newest `count` retained logs (of those before the id `before`), oldest first."""

    @abc.abstractmethod
    async def window(self, room: str) -> Window: ...

    async def resume(self, room: str, after: str, limit: int) -> tuple[Window, list[HistoryEntry]]:
        """A resume's read: the room's window, then at most `limit` logs after `after` (read
        after the window, so they may reach past its newest). A broker may read both at once."""
        window = await self.window(room)
        return window, await self.history(room, after, limit)

    @abc.abstractmethod
    async def room_exists(self, room: str) -> bool: ...
