"""A resume at the newest log this gateway delivered live reads nothing from Redis (half of a
reconnect storm), and loses nothing: not a log published while the room had no stream, not
one published after a lost subscription, not in `SUBSCRIBE_MODE=rooms`, where it reads."""

from __future__ import annotations

from service.state import STATE
from tests.support.aio import poll_until
from tests.support.factories import Client, MakeClient, auth, publish_logs
from tests.support.servers import RedisServer
from tests.support.sse import SSEStream

READS = ("evalsha", "xrange", "xrevrange", "xinfo|stream")


def _reads(redis_server: RedisServer) -> dict[str, int]:
    """The history reads Redis has answered so far, per command (INFO commandstats)."""
    calls = redis_server.calls()
    return {command: calls.get(command, 0) for command in READS}


async def _watch_then_leave(client: Client, room: str, count: int) -> list[str]:
    """A stream that gets `count` logs live, then leaves: the room has no stream any more."""
    url = f"/api/v1/rooms/{room}/logs"
    async with client.get(url, headers=auth()) as resp:
        sse = SSEStream(resp)
        assert (await sse.next()).event == "connected"
        ids = await publish_logs(client, room, 0, count)
        assert [e.id for e in await sse.collect(count)] == ids
    hub = client.app[STATE].hub

    async def left() -> bool:
        return len(hub) == 0

    await poll_until(left)
    return ids


async def _resume(client: Client, room: str, last_id: str, want: int) -> list[str | None]:
    url = f"/api/v1/rooms/{room}/logs"
    async with client.get(url, headers={**auth(), "Last-Event-ID": last_id}) as resp:
        sse = SSEStream(resp)
        connected = await sse.next()
        assert connected.event == "connected"
        assert connected.json()["recovered"] is True
        replayed: list[str | None] = [e.id for e in await sse.collect(want)] if want else []
        # Then live, with nothing between: the next log is the next event.
        [live] = await publish_logs(client, room, 100, 1)
        assert (await sse.next()).id == live
        return [*replayed, live]


async def test_a_resume_at_the_newest_delivered_log_reads_nothing_and_goes_live(
    make_client: MakeClient, redis_server: RedisServer, room: str
) -> None:
    client = await make_client(redis=True)
    ids = await _watch_then_leave(client, room, 3)
    before = _reads(redis_server)
    url = f"/api/v1/rooms/{room}/logs"
    async with client.get(url, headers={**auth(), "Last-Event-ID": ids[-1]}) as resp:
        sse = SSEStream(resp)
        assert (await sse.next()).json()["recovered"] is True
        assert _reads(redis_server) == before
        [live] = await publish_logs(client, room, 3, 1)
        assert (await sse.next()).id == live
    # One behind still reads its replay, and gets it all, then live.
    replayed = await _resume(client, room, ids[0], 3)
    assert replayed[:3] == [*ids[1:], live]


async def test_a_log_published_while_the_room_had_no_stream_is_replayed(
    make_client: MakeClient, room: str
) -> None:
    client = await make_client(redis=True)
    ids = await _watch_then_leave(client, room, 2)
    metrics = client.app[STATE].metrics

    def received() -> float:
        return metrics.registry.get_sample_value("roomlogs_broker_messages_total") or 0.0

    before = received()
    [unseen] = await publish_logs(client, room, 2, 1)  # nobody here is watching

    async def came_in() -> bool:  # off the subscription: the room's position moved past ids
        return received() > before

    await poll_until(came_in)
    got = await _resume(client, room, ids[-1], 1)
    assert got[0] == unseen


async def test_after_a_lost_subscription_a_resume_reads_its_replay(
    make_client: MakeClient, redis_server: RedisServer, room: str
) -> None:
    """What the subscription brought before an outage is not the whole story after it (the
    catch-up delivers from history, and tells gaps): a resume reads, with or without a stream
    of the room still open through the outage."""
    client = await make_client(redis=True)
    ids = await _watch_then_leave(client, room, 2)
    metrics = client.app[STATE].metrics

    def reconnects() -> float:
        return metrics.registry.get_sample_value("roomlogs_broker_reconnects_total") or 0.0

    async def cut() -> None:
        before = reconnects()
        assert int(redis_server.cli("CLIENT", "KILL", "TYPE", "pubsub")) >= 1

        async def recovered() -> bool:
            return reconnects() > before and client.app[STATE].broker.ready

        await poll_until(recovered)

    url = f"/api/v1/rooms/{room}/logs"
    async with client.get(url, headers={**auth(), "Last-Event-ID": ids[-1]}) as resp:
        sse = SSEStream(resp)  # open through the outage: the room keeps its position
        assert (await sse.next()).event == "connected"
        await cut()
        reads = _reads(redis_server)
        assert await _resume(client, room, ids[-1], 0)
        assert _reads(redis_server)["evalsha"] >= reads["evalsha"] + 2  # resume + publish
    await cut()  # and with no stream of the room left
    [missed] = await publish_logs(client, room, 2, 1)
    reads = _reads(redis_server)
    got = await _resume(client, room, ids[-1], 2)
    assert got[1] == missed  # after the live log of the first resume
    assert _reads(redis_server)["evalsha"] > reads["evalsha"]


async def test_per_room_subscriptions_always_read_the_replay(
    make_client: MakeClient, redis_server: RedisServer, room: str
) -> None:
    client = await make_client(redis=True, subscribe_mode="rooms")
    ids = await _watch_then_leave(client, room, 2)
    reads = _reads(redis_server)
    await _resume(client, room, ids[-1], 0)
    assert _reads(redis_server)["evalsha"] > reads["evalsha"] + 1  # the resume and the publish
