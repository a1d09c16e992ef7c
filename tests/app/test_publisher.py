"""service.publisher, the Python helper, against the in-process app: over Redis and over HTTP
(the `roomlogs publish` and `tail` commands: tests/process/test_publishers.py)."""

from __future__ import annotations

import pytest

from service.publisher import Publisher, PublishError
from tests.support.factories import MakeClient, auth, token
from tests.support.servers import RedisServer
from tests.support.sse import SSEStream


async def test_helper_over_redis_stores_and_publishes_with_an_id(
    make_client: MakeClient, redis_server: RedisServer, room: str
) -> None:
    client = await make_client(redis=True)
    async with client.get(f"/api/v1/rooms/{room}/logs", headers=auth()) as resp:
        sse = SSEStream(resp)
        await sse.next()
        async with Publisher(redis_url=redis_server.url) as publisher:
            stream_id = await publisher.emit(
                room, "built the story", agent_type="story", level="success", metadata={"n": 1}
            )
        (event,) = await sse.collect(1)
    assert event.id == stream_id
    log = event.json()
    assert log["message"] == "built the story"
    assert log["agentType"] == "story"
    assert log["level"] == "success"
    assert log["metadata"] == {"n": 1}
    history = await (await client.get(f"/api/v1/rooms/{room}/logs/history", headers=auth())).json()
    assert [entry["id"] for entry in history["logs"]] == [stream_id]


async def test_helper_over_http_publishes_and_reports_refusals(
    make_client: MakeClient, room: str
) -> None:
    client = await make_client()
    base = str(client.make_url("/"))
    async with client.get(f"/api/v1/rooms/{room}/logs", headers=auth()) as resp:
        sse = SSEStream(resp)
        await sse.next()
        async with Publisher(url=base, token=token()) as publisher:
            ids = await publisher.emit_many(
                room,
                [
                    {"agentType": "code", "level": "info", "message": "a"},
                    {"agentType": "code", "level": "warn", "message": "b"},
                ],
            )
        events = await sse.collect(2)
    assert [e.id for e in events] == ids
    async with Publisher(url=base, token=token(rooms=room, publish="elsewhere")) as publisher:
        with pytest.raises(PublishError, match="403 room_not_allowed"):
            await publisher.emit(room, "refused")
    async with Publisher(url=base, token=token()) as publisher:
        with pytest.raises(PublishError, match="invalid room id"):
            await publisher.emit("bad:room", "refused")
