"""A stream's opening bytes: `retry:` + `connected`, a `gap` where logs were lost, the replay.

Read after the stream is registered, so what arrives meanwhile waits in its buffer and is
merged after the replay by id: neither a gap nor a duplicate between replay and live.
"""

from __future__ import annotations

import orjson

from ..broker import Broker, HistoryEntry
from ..events import connected_frame, gap_frame, log_frame
from ..ids import parse_id
from ..logs import utc_now_iso
from ..settings import Settings
from ..subscriber import Subscriber
from .stream_query import StreamQuery


async def replay(
    broker: Broker, settings: Settings, sub: Subscriber, query: StreamQuery
) -> tuple[bytes, int]:
    """The head of the stream and how many logs it replays; raises `BrokerUnavailable`."""
    recovered = True
    gaps: list[bytes] = []
    per_room: list[tuple[str, list[HistoryEntry]]] = []
    for room in sub.rooms:
        entries: list[HistoryEntry] = []
        if query.last_key is not None:
            covered = (await broker.window(room)).covers(query.last_key)
            entries = await broker.history(room, query.last_id, settings.history_max)
            if not covered:
                recovered = False
                gaps.append(gap_frame(query.last_id, entries[0][0] if entries else None))
        elif query.history:
            entries = await broker.last(room, query.history)
        per_room.append((room, entries))
    parts = [
        connected_frame(
            {
                "roomId": sub.room,
                "timestamp": utc_now_iso(),
                "recovered": recovered,
                # Lets a client notice a dead connection: no event for ~2.5 intervals.
                "heartbeatMs": int(settings.heartbeat_interval * 1000),
            },
            settings.retry_ms,
        ),
        *gaps,
    ]
    replayed = 0
    wanted = sub.filter
    for room, entries in per_room:
        for stream_id, data in entries:
            if wanted is not None:
                log = orjson.loads(data)
                if not wanted.wants(log.get("level"), log.get("agentType")):
                    continue
            parts.append(log_frame(stream_id, data))
            replayed += 1
        if entries:
            key = parse_id(entries[-1][0])
            if key is not None:
                sub.replayed(room, key)
    return b"".join(parts), replayed
