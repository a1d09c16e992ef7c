"""The embedded broker: one process, no Redis, the same semantics (ids, bounded history, TTL)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence

from ..ids import StreamKey, format_id, parse_id
from ..settings import Settings
from .base import Broker, BrokerEvents, BrokerState, BrokerUnavailable, HistoryEntry, Window
from .script import KeyReused, Published


class _Room:
    __slots__ = ("entries", "expires_at", "trimmed")

    def __init__(self, size: int) -> None:
        self.entries: deque[tuple[StreamKey, str, bytes]] = deque(maxlen=size)
        self.expires_at = 0.0
        self.trimmed = False


# Idempotency keys remembered at most (the oldest go first): one process's memory is the
# store, and a publisher that sends a fresh key per call would otherwise grow it for the TTL.
MAX_PUBLISH_KEYS = 100_000


class MemoryBroker(Broker):
    def __init__(self, settings: Settings, events: BrokerEvents) -> None:
        super().__init__(events)
        self._size = settings.history_max
        self._ttl = settings.history_ttl
        self._rooms: dict[str, _Room] = {}
        self._last: StreamKey = (0, 0)
        self._key_ttl = settings.idempotency_ttl
        # (room, key) -> (expiry, fingerprint, ids); one TTL for all, so insertion order is
        # expiry order and expired keys are dropped from the front.
        self._keys: dict[tuple[str, str], tuple[float, str, list[str]]] = {}

    async def start(self) -> None:
        self._set_state(BrokerState.LIVE, "live")

    async def close(self) -> None:
        self._set_state(BrokerState.CLOSED, "closed")

    def _next_key(self) -> StreamKey:
        ms = time.time_ns() // 1_000_000
        last_ms, last_seq = self._last
        self._last = (ms, 0) if ms > last_ms else (last_ms, last_seq + 1)
        return self._last

    def _room(self, room: str) -> _Room | None:
        entry = self._rooms.get(room)
        if entry is not None and entry.expires_at < time.monotonic():
            del self._rooms[room]
            return None
        return entry

    async def publish(self, room: str, logs: Sequence[bytes]) -> list[str]:
        if self.state is not BrokerState.LIVE:
            raise BrokerUnavailable(self.reason)
        entry = self._room(room)
        if entry is None:
            entry = self._rooms[room] = _Room(self._size)
        entry.expires_at = time.monotonic() + self._ttl
        ids: list[str] = []
        for data in logs:
            key = self._next_key()
            stream_id = format_id(key)
            if len(entry.entries) == entry.entries.maxlen:
                entry.trimmed = True
            entry.entries.append((key, stream_id, data))
            ids.append(stream_id)
            self.events.on_entry(room, stream_id, data)
        return ids

    async def publish_once(
        self, room: str, logs: Sequence[bytes], key: str, seen: str
    ) -> Published:
        now = time.monotonic()
        keys = self._keys
        while keys:
            oldest = next(iter(keys))
            if keys[oldest][0] > now and len(keys) < MAX_PUBLISH_KEYS:
                break
            del keys[oldest]  # expired, or the oldest of too many
        prior = keys.get((room, key))
        if prior is not None:
            if prior[1] != seen:
                raise KeyReused(key)
            return Published(prior[2], replayed=True)
        ids = await self.publish(room, logs)
        keys[(room, key)] = (now + self._key_ttl, seen, ids)
        return Published(ids, replayed=False)

    async def history(self, room: str, after: str | None, limit: int) -> list[HistoryEntry]:
        entry = self._room(room)
        if entry is None:
            return []
        start = parse_id(after) if after else None
        out: list[HistoryEntry] = []
        for key, stream_id, data in entry.entries:
            if start is not None and key <= start:
                continue
            out.append((stream_id, data))
            if len(out) >= limit:
                break
        return out

    async def last(self, room: str, count: int, *, before: str | None = None) -> list[HistoryEntry]:
        entry = self._room(room)
        if entry is None or count <= 0:
            return []
        end = parse_id(before) if before else None
        held = [(sid, data) for key, sid, data in entry.entries if end is None or key < end]
        return held[-count:]

    async def window(self, room: str) -> Window:
        entry = self._room(room)
        if entry is None or not entry.entries:
            return Window(None, None, trimmed=False)
        return Window(entry.entries[0][1], entry.entries[-1][1], trimmed=entry.trimmed)

    async def room_exists(self, room: str) -> bool:
        return self._room(room) is not None
