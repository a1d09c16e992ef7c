"""Nothing lost, nothing repeated: a resume gets every retained log, a catch-up after a lost
subscription resumes where each stream stands, and a client that does not read holds a page
of its replay, not all of it."""

from __future__ import annotations

import asyncio
import socket

import orjson
import redis.asyncio as aioredis

from service.broker.keys import PLAIN
from service.state import STATE
from tests.support.aio import poll_until
from tests.support.factories import Client, MakeClient, auth, sample_log, token
from tests.support.servers import RedisServer
from tests.support.sse import SSEStream


async def _publish(
    client: Client, room: str, logs: list[dict[str, object]], batch: int = 100
) -> list[str]:
    ids: list[str] = []
    for start in range(0, len(logs), batch):
        r = await client.post(
            f"/api/v1/rooms/{room}/logs", json=logs[start : start + batch], headers=auth()
        )
        assert r.status == 202, await r.text()
        ids += (await r.json())["ids"]
    return ids


async def _cut_the_subscription(client: Client, redis_server: RedisServer) -> None:
    """Kill the gateway's pub/sub connection and wait until it has caught up again."""
    metrics = client.app[STATE].metrics

    def reconnects() -> float:
        return metrics.registry.get_sample_value("roomlogs_broker_reconnects_total") or 0.0

    before = reconnects()
    assert int(redis_server.cli("CLIENT", "KILL", "TYPE", "pubsub")) >= 1

    async def recovered() -> bool:  # the reader's own state: no event crosses to the test
        return reconnects() > before and client.app[STATE].broker.ready

    await poll_until(recovered)


async def test_a_resume_before_the_retained_window_gets_every_retained_log(
    make_client: MakeClient, redis_server: RedisServer, room: str
) -> None:
    """`MAXLEN ~ 10` keeps whole stream nodes: far more than 10 logs are retained, and a
    resume from before them gets all of them (it used to get the first HISTORY_MAX)."""
    client = await make_client(redis=True, history_max=10)
    ids = await _publish(client, room, [sample_log(i) for i in range(450)])
    redis = aioredis.Redis.from_url(redis_server.url)
    rows = await redis.xrange(PLAIN.history(room))
    retained = [i.decode() if isinstance(i, bytes) else str(i) for i, _ in rows or []]
    await redis.aclose()
    assert len(retained) > 10  # the premise: Redis kept more than HISTORY_MAX
    assert retained == ids[-len(retained) :]
    headers = {**auth(), "Last-Event-ID": ids[0]}
    async with client.get(f"/api/v1/rooms/{room}/logs", headers=headers) as resp:
        sse = SSEStream(resp)
        connected = await sse.next()
        assert connected.json()["recovered"] is False
        gap = await sse.next()
        assert gap.event == "gap"
        assert gap.json() == {"after": ids[0], "resumedFrom": retained[0]}
        replayed = await sse.collect(len(retained))
        assert [e.id for e in replayed] == retained
        more = await client.post(f"/api/v1/rooms/{room}/logs", json=sample_log(9), headers=auth())
        [live] = await sse.collect(1)
        assert live.id == (await more.json())["ids"][0]


async def test_a_catch_up_repeats_nothing_for_a_stream_resumed_at_the_newest_id(
    make_client: MakeClient, redis_server: RedisServer, room: str
) -> None:
    client = await make_client(redis=True)
    [newest] = await _publish(client, room, [sample_log(0)])
    headers = {**auth(), "Last-Event-ID": newest}
    async with client.get(f"/api/v1/rooms/{room}/logs", headers=headers) as resp:
        sse = SSEStream(resp)
        assert (await sse.next()).event == "connected"
        await _cut_the_subscription(client, redis_server)
        [after] = await _publish(client, room, [sample_log(1)])
        [event] = await sse.collect(1)
        assert event.id == after  # not the newest one again


async def test_a_catch_up_sends_nothing_from_before_a_stream_that_asked_for_no_history(
    make_client: MakeClient, redis_server: RedisServer, room: str
) -> None:
    client = await make_client(redis=True)
    await _publish(client, room, [sample_log(0)])  # just before the stream: within a second
    async with client.get(f"/api/v1/rooms/{room}/logs", headers=auth()) as resp:
        sse = SSEStream(resp)
        assert (await sse.next()).event == "connected"
        await _cut_the_subscription(client, redis_server)
        [after] = await _publish(client, room, [sample_log(1)])
        [event] = await sse.collect(1)
        assert event.id == after


async def test_a_client_that_never_reads_its_replay_holds_a_page_and_is_let_go(
    make_client: MakeClient, room: str
) -> None:
    """Twenty clients ask for 1,000 logs of 30 KB (30 MB each) with a tiny receive window and
    never read: each holds at most about a page in the gateway (it used to hold all of it).
    Live logs then fill their buffers: closed as slow consumers, their sockets go at once."""
    client = await make_client(history_max=1000, subscriber_buffer=5)
    big = "x" * 30_000
    await _publish(client, room, [sample_log(i, note=big) for i in range(1000)], batch=10)
    state = client.app[STATE]
    assert client.server.port is not None
    request = (
        f"GET /api/v1/rooms/{room}/logs?history=1000 HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {token()}\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    socks = []
    for _ in range(20):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", client.server.port))
        await loop.sock_sendall(sock, request)
        socks.append(sock)
    try:

        async def all_stuck() -> bool:  # every handler waits on its full socket
            buffered = [s.transport.get_write_buffer_size() for s in state.hub if s.transport]
            return len(buffered) == 20 and min(buffered) > 0

        await poll_until(all_stuck)
        held = [s.transport.get_write_buffer_size() for s in state.hub if s.transport]
        assert max(held) < 2 * 100 * 31_000  # two pages at the most, not 30 MB
        await _publish(client, room, [sample_log(i) for i in range(10)])

        async def let_go() -> bool:
            return len(state.hub) == 0

        await poll_until(let_go)
        gauge = state.metrics.registry.get_sample_value("roomlogs_connections")
        assert gauge == 0
        slow = state.metrics.registry.get_sample_value("roomlogs_slow_consumer_closes_total")
        assert slow == 20
        for sock in socks:  # the gateway closed them: reading ends in EOF or a reset
            async with asyncio.timeout(10):
                while True:
                    try:
                        if not await loop.sock_recv(sock, 1 << 20):
                            break
                    except ConnectionResetError:
                        break
    finally:
        for sock in socks:
            sock.close()


async def test_history_n_beyond_a_page_sends_exactly_the_last_n_in_order(
    make_client: MakeClient, broker_kind: str, room: str
) -> None:
    """Read a page at a time (backwards to find the start, then forwards): the same logs as
    one read would give."""
    client = await make_client(redis=broker_kind == "redis")
    ids = await _publish(client, room, [sample_log(i) for i in range(400)])
    for n in (99, 100, 101, 250, 399, 400, 1000):
        async with client.get(f"/api/v1/rooms/{room}/logs?history={n}", headers=auth()) as resp:
            sse = SSEStream(resp)
            assert (await sse.next()).event == "connected"
            replayed = await sse.collect(min(n, 400))
            assert [e.id for e in replayed] == ids[-n:]


async def test_a_live_stream_is_told_in_band_when_a_catch_up_finds_logs_trimmed(
    make_client: MakeClient, redis_server: RedisServer, room: str
) -> None:
    """Item 1: logs stored while the subscription was down, so many that history trimmed the
    first of them: the stream gets `event: gap` (after its position, resuming at the oldest
    retained), then every retained log in order; a catch-up with nothing trimmed says nothing."""
    client = await make_client(redis=True, history_max=10)
    metrics = client.app[STATE].metrics
    redis = aioredis.Redis.from_url(redis_server.url)
    try:
        async with client.get(f"/api/v1/rooms/{room}/logs", headers=auth()) as resp:
            sse = SSEStream(resp)
            assert (await sse.next()).event == "connected"
            [seen] = await _publish(client, room, [sample_log(0)])
            assert (await sse.next()).id == seen
            # What the publish script stores, without the PUBLISH nobody here would hear.
            async with redis.pipeline(transaction=False) as pipe:
                for i in range(1, 451):
                    pipe.xadd(PLAIN.history(room), {"log": orjson.dumps(sample_log(i))}, maxlen=10)
                await pipe.execute()
            rows = await redis.xrange(PLAIN.history(room))
            retained = [i.decode() if isinstance(i, bytes) else str(i) for i, _ in rows or []]
            assert 10 < len(retained) < 450  # the premise: the first ones after `seen` are gone
            await _cut_the_subscription(client, redis_server)
            gap = await sse.next()
            assert gap.event == "gap"
            assert gap.json() == {"after": seen, "resumedFrom": retained[0]}
            caught = await sse.collect(len(retained))
            assert [e.id for e in caught] == retained
            assert metrics.registry.get_sample_value("roomlogs_live_gaps_total") == 1
            await _cut_the_subscription(client, redis_server)
            [after] = await _publish(client, room, [sample_log(999)])
            nxt = await sse.next()
            assert (nxt.event, nxt.id) == ("log", after)  # no second gap before it
            assert metrics.registry.get_sample_value("roomlogs_live_gaps_total") == 1
    finally:
        await redis.aclose()
