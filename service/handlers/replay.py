"""A stream's opening bytes: `retry:` + `connected`, a `gap` where logs were lost, the replay.

Read after the stream is registered, so what arrives meanwhile waits in its buffer and is
merged after the replay by id: neither a gap nor a duplicate between replay and live. The
replay is read and written a page at a time, under the socket's flow control: a client that
does not read holds one page, not its whole history, and a resume before the retained window
gets every retained log (Redis' `MAXLEN ~` keeps more than HISTORY_MAX), not only the first
HISTORY_MAX of them.
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator, Callable
from typing import Final

import orjson

from ..broker import HistoryEntry
from ..events import connected_frame, cursor_log_frame, gap_frame, log_frame
from ..ids import MAX_KEY, StreamKey, format_id, parse_id
from ..logs import utc_now_iso
from ..roomtag import with_room
from ..settings import Settings
from ..shared_reads import SharedReads
from ..subscriber import Subscriber
from .stream_query import StreamQuery

PAGE: Final = 100  # logs read and written at a time

EMPTY: Final[StreamKey] = (0, 0)


async def replay(
    reads: SharedReads,
    settings: Settings,
    sub: Subscriber,
    query: StreamQuery,
    start: Callable[[str, StreamKey], None],
    known: Callable[[str], StreamKey | None],
) -> AsyncIterator[tuple[bytes, int]]:
    """The stream's head, then its replay, as (bytes, logs) pieces to write one by one.

    `start(room, key)` is told, per room, the newest id stored when the stream began: what
    came before it is the replay's (or nobody's), so a catch-up never repeats it. The rooms'
    replays are merged by stream id, oldest first. `known(room)` is the newest id this
    process delivered to the room live, when nothing newer can have gone by: a resume at or
    after it reads nothing (half of a reconnect storm). Raises `BrokerUnavailable`; stops
    early once `sub` has ended.
    """
    recovered = True
    gaps: list[bytes] = []
    sources: list[_Source] = []
    for room in sub.rooms:
        entries: list[HistoryEntry] = []
        after = query.resume.get(room)
        count = query.history_of(room)
        newest_live = known(room)
        if newest_live is not None and not count and (after is None or after >= newest_live):
            # Every log after `newest_live` is yet to be delivered, and this stream, registered,
            # gets it live: nothing to replay, nothing lost (an `after` past it: see below).
            newest = newest_live
        elif after is not None:
            after_id = format_id(after)
            window, entries = await reads.resume(room, after_id, PAGE)
            if not window.covers(after):
                recovered = False
                resumed = entries[0][0] if entries else None
                gaps.append(gap_frame(after_id, resumed, room if query.multi else None))
            newest = _key(window.newest)
        elif count:
            entries, newest = await _last(reads, room, count)
        else:
            newest_page = await reads.last(room, 1)
            newest = _key(newest_page[0][0] if newest_page else None)
        start(room, newest)
        if after is not None or entries:
            # Where the stream stands in the room: live and caught-up logs up to here are
            # the replay's, and are dropped from its buffer. (A stream that asked for no
            # history keeps no position, so an idle stream stays small: a catch-up resumes
            # after the earliest start among the room's streams, not before it.)
            sub.replayed(room, max(newest, after or EMPTY))
        if sub.cursor is not None:
            # What a client that lost the stream before its first log resumes from.
            if after is not None:
                sub.cursor.advance(room, after)
            else:
                sub.cursor.advance(room, _before(entries[0][0]) if entries else newest)
        sources.append(_Source(room, entries, newest))
    about: dict[str, object] = {"rooms": list(sub.rooms)} if query.multi else {"roomId": sub.room}
    head = connected_frame(
        {
            **about,
            "timestamp": utc_now_iso(),
            "recovered": recovered,
            # Lets a client notice a dead connection: no event for ~2.5 intervals.
            "heartbeatMs": int(settings.heartbeat_interval * 1000),
        },
        settings.retry_ms,
    )
    # The head goes out with the first page (and the response's own head: see _handoff.py),
    # in one send: a resume is one write, however many logs it missed.
    opening = head + b"".join(gaps)
    async for batch in _merged(reads, sources, sub):
        frames, count = _frames(sub, batch)
        if opening:
            frames, opening = opening + frames, b""
        yield frames, count
    if opening:
        yield opening, 0


class _Source:
    """One room's replay, read forward a page at a time up to `newest`."""

    __slots__ = ("at", "newest", "page", "room")

    def __init__(self, room: str, page: list[HistoryEntry], newest: StreamKey) -> None:
        self.room = room
        self.page = page
        self.at = 0
        self.newest = newest

    async def next_page(self, reads: SharedReads) -> bool:
        """Read the page after the current one; False once the replay reached `newest`: what
        was stored later is live, waiting in the stream's buffer."""
        last = parse_id(self.page[-1][0])
        if last is None or last >= self.newest or len(self.page) < PAGE:
            return False
        self.page = await reads.history(self.room, self.page[-1][0], PAGE)
        self.at = 0
        return bool(self.page)


async def _merged(
    reads: SharedReads, sources: list[_Source], sub: Subscriber
) -> AsyncIterator[list[tuple[str, HistoryEntry]]]:
    """Every source's logs merged by stream id, in batches of at most PAGE."""
    if len(sources) == 1:
        # One room: its pages as they were read, in order already (no heap, no id parsed
        # per log).
        src = sources[0]
        while src.page and sub.ending is None:
            yield [(src.room, entry) for entry in src.page]
            if not await src.next_page(reads):
                return
        return
    heap = [(_key(src.page[0][0]), i) for i, src in enumerate(sources) if src.page]
    heapq.heapify(heap)
    batch: list[tuple[str, HistoryEntry]] = []
    while heap and sub.ending is None:
        _, i = heapq.heappop(heap)
        src = sources[i]
        batch.append((src.room, src.page[src.at]))
        src.at += 1
        if src.at == len(src.page) and not await src.next_page(reads):
            continue
        heapq.heappush(heap, (_key(src.page[src.at][0]), i))
        if len(batch) >= PAGE:
            yield batch
            batch = []
    if batch:
        yield batch


async def _last(reads: SharedReads, room: str, count: int) -> tuple[list[HistoryEntry], StreamKey]:
    """The first page of the room's last `count` logs, and the newest id stored.

    More than a page back, the start is found walking back a page at a time (ids kept, logs
    dropped), and the replay then reads forward from it in pages like a resume.
    """
    newest_page = await reads.last(room, min(count, PAGE))
    if not newest_page:
        return [], EMPTY
    newest = _key(newest_page[-1][0])
    if count <= PAGE:
        return newest_page, newest
    oldest, seen = newest_page[0][0], len(newest_page)
    while seen < count:
        want = min(count - seen, PAGE)
        page = await reads.last(room, want, before=oldest)
        if page:
            oldest, seen = page[0][0], seen + len(page)
        if len(page) < want:
            break  # the stream's beginning
    # `oldest` is the first of the last `count`: the forward pages start just before it.
    previous = await reads.last(room, 1, before=oldest)
    after = previous[0][0] if previous else None
    return await reads.history(room, after, PAGE), newest


def _frames(sub: Subscriber, batch: list[tuple[str, HistoryEntry]]) -> tuple[bytes, int]:
    parts: list[bytes] = []
    wanted = sub.filter
    cursor = sub.cursor
    newest: dict[str, str] = {}
    for room, (stream_id, data) in batch:
        newest[room] = stream_id
        if wanted is not None:
            log = orjson.loads(data)
            if not wanted.wants(log.get("level"), log.get("agentType")):
                continue
        if cursor is None:
            parts.append(log_frame(stream_id, data))
            continue
        key = parse_id(stream_id)
        if key is not None:
            cursor.advance(room, key)
        parts.append(cursor_log_frame(cursor.encode(), with_room(room, data)))
    for room, stream_id in newest.items():
        key = parse_id(stream_id)
        if key is not None:
            sub.replayed(room, key)  # a page may reach past the newest at the start
    return b"".join(parts), len(parts)


def _before(stream_id: str) -> StreamKey:
    """The position just before `stream_id`: a resume from it replays that log too."""
    ms, seq = _key(stream_id)
    if seq:
        return ms, seq - 1
    return (ms - 1, MAX_KEY[1]) if ms else EMPTY


def _key(stream_id: str | None) -> StreamKey:
    key = parse_id(stream_id) if stream_id else None
    return key if key is not None else EMPTY
