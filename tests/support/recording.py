"""The app's own parts, subclassed to write down what they are told (real code paths, not
mocks): `RecordedEndings` for the streams it ended, `RecordingBroker` for the rooms it was
told to listen to and what was read from it."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from service.broker import BrokerEvents, HistoryEntry, Window
from service.broker.memory import MemoryBroker
from service.endings import Ending, Endings
from service.hub import Hub
from service.metrics import Metrics
from service.settings import Settings
from service.subscriber import Subscriber


class RecordedEndings(Endings):
    """The app's `Endings`, writing down each stream it ended and why."""

    def __init__(self, hub: Hub) -> None:
        self.metrics = Metrics()
        super().__init__(hub, self.metrics, 3000)
        self.ended_streams: list[tuple[Subscriber, Ending | None]] = []

    def ended(self, sub: Subscriber) -> None:
        self.ended_streams.append((sub, sub.ending))
        super().ended(sub)

    def slow_consumers(self) -> float:
        value = self.metrics.registry.get_sample_value("roomlogs_slow_consumer_closes_total")
        return value or 0.0


class RecordingBroker(MemoryBroker):
    """The embedded broker, writing down what it is told and what is read from it, in order."""

    def __init__(self, settings: Settings, events: BrokerEvents) -> None:
        super().__init__(settings, events)
        self.calls: list[tuple[str, str]] = []
        self.changed = asyncio.Event()

    def subscribe(self, rooms: Collection[str]) -> None:
        self.calls += [("subscribe", room) for room in rooms]
        self.changed.set()
        super().subscribe(rooms)

    def unsubscribe(self, rooms: Collection[str]) -> None:
        self.calls += [("unsubscribe", room) for room in rooms]
        self.changed.set()
        super().unsubscribe(rooms)

    async def history(self, room: str, after: str | None, limit: int) -> list[HistoryEntry]:
        self.calls.append(("history", room))
        return await super().history(room, after, limit)

    async def last(self, room: str, count: int, *, before: str | None = None) -> list[HistoryEntry]:
        self.calls.append(("last", room))
        return await super().last(room, count, before=before)

    async def window(self, room: str) -> Window:
        self.calls.append(("window", room))
        return await super().window(room)

    def told(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if c[0] in ("subscribe", "unsubscribe")]
