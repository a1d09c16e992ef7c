"""Issue 13, item 1: several rooms on one stream (`GET /api/v1/logs?rooms=`), with a cursor.

Every room resumes after its own position whatever the interleaving and wherever the stream
broke; the log names its room first and cannot forge it; the cursor stays under 1 KiB at 64
rooms of UUIDs; each bad request has its error.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import defaultdict
from typing import Any

import aiohttp
import orjson
import redis.asyncio as aioredis

from service.broker.keys import PLAIN
from service.sse import Event
from tests.support.factories import Client, MakeClient, auth, sample_log, token
from tests.support.servers import RedisServer
from tests.support.sse import SSEStream


def _url(rooms: list[str], **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"/api/v1/logs?rooms={','.join(rooms)}" + (f"&{query}" if query else "")


async def _publish(client: Client, room: str, i: int, **extra: Any) -> str:
    r = await client.post(f"/api/v1/rooms/{room}/logs", json=sample_log(i, **extra), headers=auth())
    assert r.status == 202, await r.text()
    ids: list[str] = (await r.json())["ids"]
    return ids[0]


def _cursor(ev: Event) -> str:
    assert ev.id is not None, ev
    return ev.id


async def _error(client: Client, url: str, headers: dict[str, str] | None = None) -> Any:
    r = await client.get(url, headers=headers or auth())
    body = await r.json()
    return r.status, body["error"], body["detail"]


async def test_each_log_names_its_room_first_and_carries_the_cursor(
    make_client: MakeClient, broker_kind: str, room: str
) -> None:
    client = await make_client(redis=broker_kind == "redis")
    rooms = [f"{room}-a", f"{room}-b"]
    async with client.get(_url(rooms), headers=auth()) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        sse = SSEStream(resp)
        connected = await sse.next()
        assert connected.event == "connected"
        data = connected.json()
        assert data["rooms"] == rooms
        assert data["recovered"] is True
        assert set(data) == {"rooms", "timestamp", "recovered", "heartbeatMs"}
        await _publish(client, rooms[1], 0)
        await _publish(client, rooms[0], 1)
        events = await sse.collect(2)
    assert [orjson.loads(e.data)["roomId"] for e in events] == [rooms[1], rooms[0]]
    assert [e.data.startswith('{"roomId":') for e in events] == [True, True]
    assert [e.json()["message"] for e in events] == ["log 0", "log 1"]
    assert all(_cursor(e).startswith("r1.") for e in events)
    assert events[0].id != events[1].id


async def test_five_rooms_twenty_random_disconnects_lose_and_repeat_nothing(
    make_client: MakeClient, broker_kind: str, room: str
) -> None:
    """Interleaved publishes; the reader hangs up at random points twenty times and resumes
    by the cursor, as the header and as `lastEventId=` in turn."""
    client = await make_client(redis=broker_kind == "redis")
    rooms = [f"{room}-{i}" for i in range(5)]
    rng = random.Random(13)
    per_room = 60
    published: dict[str, list[str]] = defaultdict(list)
    order = [r for r in rooms for _ in range(per_room)]
    rng.shuffle(order)

    async def publisher() -> None:
        for i, target in enumerate(order):
            published[target].append(await _publish(client, target, i))
            if i % 7 == 0:
                await asyncio.sleep(0)  # let the reader run between bursts

    received: dict[str, list[str]] = defaultdict(list)
    cursor: str | None = None
    total = len(order)
    got = 0
    task = asyncio.create_task(publisher())
    try:
        async with asyncio.timeout(60):
            for attempt in range(21):
                headers = auth()
                url = _url(rooms)
                if cursor is not None and attempt % 2:
                    headers["Last-Event-ID"] = cursor
                elif cursor is not None:
                    url = _url(rooms, lastEventId=cursor)
                # The last round reads to the end; the twenty before hang up at random.
                limit = total - got if attempt == 20 else rng.randint(1, 25)
                async with client.get(url, headers=headers) as resp:
                    assert resp.status == 200, await resp.text()
                    sse = SSEStream(resp)
                    assert (await sse.next()).event == "connected"
                    read = 0
                    while read < limit and got < total:
                        ev = await sse.next()
                        assert ev.event == "log", ev
                        data = ev.json()
                        received[data["roomId"]].append(data["message"])
                        cursor = ev.id
                        read += 1
                        got += 1
        await task
    finally:
        task.cancel()
    expected_messages: dict[str, list[str]] = defaultdict(list)
    for i, target in enumerate(order):
        expected_messages[target].append(f"log {i}")
    for r in rooms:
        assert received[r] == expected_messages[r], r
    assert got == total


async def test_a_cursor_of_64_uuid_rooms_with_logs_stays_under_1_kib(
    make_client: MakeClient, broker_kind: str
) -> None:
    client = await make_client(redis=broker_kind == "redis")
    rooms = [str(uuid.uuid4()) for _ in range(64)]
    for i, r in enumerate(rooms):
        await _publish(client, r, i)
    async with client.get(_url(rooms, history="1"), headers=auth()) as resp:
        sse = SSEStream(resp)
        await sse.next()
        events = await sse.collect(64)
    cursor = _cursor(events[-1])
    print(f"cursor with 64 UUID rooms: {len(cursor)} bytes")
    assert len(cursor.encode()) < 1024
    # It holds every room: a resume replays nothing, and only what comes after.
    async with client.get(_url(rooms), headers={**auth(), "Last-Event-ID": cursor}) as resp:
        sse = SSEStream(resp)
        assert (await sse.next()).json()["recovered"] is True
        await _publish(client, rooms[40], 99)
        (ev,) = await sse.collect(1)
    assert (ev.json()["roomId"], ev.json()["message"]) == (rooms[40], "log 99")


async def test_history_n_merges_the_rooms_oldest_first(
    make_client: MakeClient, broker_kind: str, room: str
) -> None:
    client = await make_client(redis=broker_kind == "redis")
    a, b = f"{room}-a", f"{room}-b"
    ids: dict[str, str] = {}
    for i, target in enumerate([a, b, b, a, b, a, a]):
        ids[f"log {i}"] = await _publish(client, target, i)
    async with client.get(_url([a, b], history="2"), headers=auth()) as resp:
        sse = SSEStream(resp)
        await sse.next()
        events = await sse.collect(4)
    got = [(e.json()["roomId"], e.json()["message"]) for e in events]
    # The last two of each room (a: 5, 6; b: 2, 4), each room in order ...
    assert [m for r, m in got if r == a] == ["log 5", "log 6"]
    assert [m for r, m in got if r == b] == ["log 2", "log 4"]
    # ... merged by stream id (two rooms' ids may share a millisecond: then either first).
    keys = [tuple(map(int, ids[m].split("-"))) for _, m in got]
    assert keys == sorted(keys)


async def test_a_room_added_to_the_list_starts_live_or_with_history_the_others_resume(
    make_client: MakeClient, broker_kind: str, room: str
) -> None:
    client = await make_client(redis=broker_kind == "redis")
    a, b, c = f"{room}-a", f"{room}-b", f"{room}-c"
    await _publish(client, a, 0)
    await _publish(client, c, 1)
    async with client.get(_url([a, b]), headers=auth()) as resp:
        sse = SSEStream(resp)
        await sse.next()
        await _publish(client, b, 2)
        (first,) = await sse.collect(1)
    await _publish(client, a, 3)  # while away
    await _publish(client, b, 4)
    # `c` joins: it is not in the cursor, so history=1 gives its last log; a and b resume.
    headers = {**auth(), "Last-Event-ID": _cursor(first)}
    async with client.get(_url([a, b, c], history="1"), headers=headers) as resp:
        sse = SSEStream(resp)
        await sse.next()
        events = await sse.collect(3)
    assert sorted((e.json()["roomId"], e.json()["message"]) for e in events) == [
        (a, "log 3"),
        (b, "log 4"),
        (c, "log 1"),
    ]


async def test_a_room_that_lost_logs_gets_its_own_gap(
    make_client: MakeClient, broker_kind: str, room: str
) -> None:
    # Redis trims `MAXLEN ~` by whole stream nodes (100 entries), so publish well past that.
    client = await make_client(redis=broker_kind == "redis", history_max=5)
    a, b = f"{room}-a", f"{room}-b"
    async with client.get(_url([a, b]), headers=auth()) as resp:
        sse = SSEStream(resp)
        await sse.next()
        a_id = await _publish(client, a, 0)
        await _publish(client, b, 1)
        events = await sse.collect(2)
    cursor = _cursor(events[-1])
    for i in range(250):
        await _publish(client, a, 2 + i)
    async with client.get(_url([a, b]), headers={**auth(), "Last-Event-ID": cursor}) as resp:
        sse = SSEStream(resp)
        connected = await sse.next()
        assert connected.json()["recovered"] is False
        gap = await sse.next()
    assert gap.event == "gap"
    assert gap.json()["roomId"] == a
    assert gap.json()["after"] == a_id  # room a's own position, from the cursor
    assert set(gap.json()) == {"roomId", "after", "resumedFrom"}
    first = await sse.next()
    assert (first.json()["roomId"], first.id is not None) == (a, True)
    r = await client.get(f"/api/v1/rooms/{a}/logs/history?limit=1", headers=auth())
    assert first.json()["message"] == (await r.json())["logs"][0]["message"]


async def test_filters_apply_to_every_room(
    make_client: MakeClient, broker_kind: str, room: str
) -> None:
    client = await make_client(redis=broker_kind == "redis")
    a, b = f"{room}-a", f"{room}-b"
    async with client.get(_url([a, b], level="warn"), headers=auth()) as resp:
        sse = SSEStream(resp)
        await sse.next()
        await _publish(client, a, 0)
        await _publish(client, b, 1, level="error")
        await _publish(client, a, 2, level="warn")
        events = await sse.collect(2)
    assert [e.json()["message"] for e in events] == ["log 1", "log 2"]


# -- what is refused ------------------------------------------------------------------------


async def test_a_log_cannot_forge_its_room(
    make_client: MakeClient, redis_server: RedisServer, room: str
) -> None:
    client = await make_client(redis=True)
    r = await client.post(
        f"/api/v1/rooms/{room}/logs", json=sample_log(0, roomId="other"), headers=auth()
    )
    assert r.status == 400
    assert (await r.json())["error"] == "invalid_log"
    redis = aioredis.Redis.from_url(redis_server.url)
    try:
        async with client.get(_url([room]), headers=auth()) as resp:
            sse = SSEStream(resp)
            await sse.next()
            await redis.publish(PLAIN.channel(room), orjson.dumps(sample_log(1, roomId="other")))
            (ev,) = await sse.collect(1)
    finally:
        await redis.aclose()
    assert ev.data.count('"roomId"') == 1
    assert ev.json()["roomId"] == room
    # Stored without it: the one-room stream and history show no roomId at all.
    r = await client.get(f"/api/v1/rooms/{room}/logs/history", headers=auth())
    assert "roomId" not in (await r.json())["logs"][0]


async def test_every_room_must_be_in_the_token(make_client: MakeClient, room: str) -> None:
    client = await make_client()
    a, b, c = f"{room}-a", f"{room}-b", f"{room}-c"
    status, code, detail = await _error(client, _url([a, b, c]), auth(token(rooms=[a])))
    assert (status, code) == (403, "room_not_allowed")
    assert repr(b) in detail


async def test_too_many_rooms_after_duplicates_collapse(make_client: MakeClient, room: str) -> None:
    client = await make_client(max_rooms_per_stream=3)
    rooms = [f"{room}-{i}" for i in range(3)]
    async with client.get(_url(rooms + rooms), headers=auth()) as resp:
        assert resp.status == 200  # six given, three distinct
    status, code, detail = await _error(client, _url([*rooms, f"{room}-x"]))
    assert (status, code) == (400, "too_many_rooms")
    assert "3" in detail


async def test_a_bad_room_id_is_named(make_client: MakeClient, room: str) -> None:
    client = await make_client()
    status, code, detail = await _error(client, _url([room, "-bad"]))
    assert (status, code) == (400, "invalid_room_id")
    assert "'-bad'" in detail
    assert (await _error(client, "/api/v1/logs"))[:2] == (400, "missing_rooms")
    assert (await _error(client, "/api/v1/logs?rooms=,"))[:2] == (400, "missing_rooms")


async def test_a_garbage_cursor_is_refused(make_client: MakeClient, room: str) -> None:
    client = await make_client()
    for bad in ["garbage", "r1.!!!", "r1.AQ", "r1.", "1700000000000-0", "r1." + "A" * 5000]:
        status, code, _ = await _error(client, _url([room]), {**auth(), "Last-Event-ID": bad})
        assert (status, code) == (400, "invalid_last_event_id"), bad
    status, code, _ = await _error(client, _url([room], lastEventId="nope"))
    assert (status, code) == (400, "invalid_last_event_id")


async def test_no_token_is_401_before_anything_else(make_client: MakeClient, room: str) -> None:
    client = await make_client()
    r = await client.get(_url([room]))
    assert r.status == 401
    assert "WWW-Authenticate" in r.headers


async def test_a_stream_of_several_rooms_is_one_stream_of_each(
    make_client: MakeClient, room: str
) -> None:
    """The hub sees it in each of its rooms: a one-room stream and it both get the log."""
    client = await make_client()
    a, b = f"{room}-a", f"{room}-b"
    session: aiohttp.ClientSession = client.session
    assert session is not None
    async with (
        client.get(_url([a, b]), headers=auth()) as multi,
        client.get(f"/api/v1/rooms/{b}/logs", headers=auth()) as single,
    ):
        m, s = SSEStream(multi), SSEStream(single)
        await m.next()
        await s.next()
        await _publish(client, b, 7)
        (mev,) = await m.collect(1)
        (sev,) = await s.collect(1)
    assert mev.json() == {"roomId": b, **sev.json()}
    assert "roomId" not in sev.json()
