"""A stream's opening bytes: `retry:` + `connected`, a `gap` where logs were lost, the replay.

Read after the stream is registered, so what arrives meanwhile waits in its buffer and is
merged after the replay by id: neither a gap nor a duplicate between replay and live. The
replay is read and written a page at a time, under the socket's flow control: a client that
does not read holds one page, not its whole history, and a resume before the retained window
gets every retained log (Redis' `MAXLEN ~` keeps more than HISTORY_MAX), not only the first
HISTORY_MAX of them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Final

import orjson

from ..broker import Broker, HistoryEntry
from ..events import connected_frame, gap_frame, log_frame
from ..ids import StreamKey, parse_id
from ..logs import utc_now_iso
from ..settings import Settings
from ..subscriber import Subscriber
from .stream_query import StreamQuery

PAGE: Final = 100  # logs read and written at a time

EMPTY: Final[StreamKey] = (0, 0)


async def replay(
    broker: Broker,
    settings: Settings,
    sub: Subscriber,
    query: StreamQuery,
    start: Callable[[str, StreamKey], None],
) -> AsyncIterator[tuple[bytes, int]]:
    """The stream's head, then its replay, as (bytes, logs) pieces to write one by one.

    `start(room, key)` is told, per room, the newest id stored when the stream began: what
    came before it is the replay's (or nobody's), so a catch-up never repeats it. Raises
    `BrokerUnavailable`; stops early once `sub` has ended.
    """
    recovered = True
    gaps: list[bytes] = []
    first_pages: list[tuple[str, list[HistoryEntry], StreamKey]] = []
    for room in sub.rooms:
        entries: list[HistoryEntry] = []
        if query.last_key is not None:
            window = await broker.window(room)
            entries = await broker.history(room, query.last_id, PAGE)
            if not window.covers(query.last_key):
                recovered = False
                gaps.append(gap_frame(query.last_id, entries[0][0] if entries else None))
            newest = _key(window.newest)
        elif query.history:
            entries, newest = await _last(broker, room, query.history)
        else:
            newest_page = await broker.last(room, 1)
            newest = _key(newest_page[0][0] if newest_page else None)
        start(room, newest)
        if query.last_key is not None or entries:
            # Where the stream stands in the room: live and caught-up logs up to here are
            # the replay's, and are dropped from its buffer. (A stream that asked for no
            # history keeps no position, so an idle stream stays small: a catch-up resumes
            # after the earliest start among the room's streams, not before it.)
            sub.replayed(room, max(newest, query.last_key or EMPTY))
        first_pages.append((room, entries, newest))
    head = connected_frame(
        {
            "roomId": sub.room,
            "timestamp": utc_now_iso(),
            "recovered": recovered,
            # Lets a client notice a dead connection: no event for ~2.5 intervals.
            "heartbeatMs": int(settings.heartbeat_interval * 1000),
        },
        settings.retry_ms,
    )
    yield head + b"".join(gaps), 0
    for room, entries, newest in first_pages:
        page = entries
        while page and sub.ending is None:
            yield _frames(sub, room, page)
            last = parse_id(page[-1][0])
            # Up to what was stored when the stream began: what came later is live, waiting
            # in the stream's buffer.
            if last is None or last >= newest or len(page) < PAGE:
                break
            page = await broker.history(room, page[-1][0], PAGE)


async def _last(broker: Broker, room: str, count: int) -> tuple[list[HistoryEntry], StreamKey]:
    """The first page of the room's last `count` logs, and the newest id stored.

    More than a page back, the start is found walking back a page at a time (ids kept, logs
    dropped), and the replay then reads forward from it in pages like a resume.
    """
    newest_page = await broker.last(room, min(count, PAGE))
    if not newest_page:
        return [], EMPTY
    newest = _key(newest_page[-1][0])
    if count <= PAGE:
        return newest_page, newest
    oldest, seen = newest_page[0][0], len(newest_page)
    while seen < count:
        want = min(count - seen, PAGE)
        page = await broker.last(room, want, before=oldest)
        if page:
            oldest, seen = page[0][0], seen + len(page)
        if len(page) < want:
            break  # the stream's beginning
    # `oldest` is the first of the last `count`: the forward pages start just before it.
    previous = await broker.last(room, 1, before=oldest)
    after = previous[0][0] if previous else None
    return await broker.history(room, after, PAGE), newest


def _frames(sub: Subscriber, room: str, page: list[HistoryEntry]) -> tuple[bytes, int]:
    parts: list[bytes] = []
    wanted = sub.filter
    for stream_id, data in page:
        if wanted is not None:
            log = orjson.loads(data)
            if not wanted.wants(log.get("level"), log.get("agentType")):
                continue
        parts.append(log_frame(stream_id, data))
    key = parse_id(page[-1][0])
    if key is not None:
        sub.replayed(room, key)  # a page may reach past the newest at the start
    return b"".join(parts), len(parts)


def _key(stream_id: str | None) -> StreamKey:
    key = parse_id(stream_id) if stream_id else None
    return key if key is not None else EMPTY
