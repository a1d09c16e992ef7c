"""Fan-out through the app: rooms are isolated (many streams on one room, on the production
process: tests/process/test_fanout.py)."""

from __future__ import annotations

from tests.support.factories import MakeClient, auth, sample_log
from tests.support.sse import SSEStream


async def test_two_rooms_never_see_each_others_logs(
    make_client: MakeClient, broker_kind: str, room: str
) -> None:
    client = await make_client(redis=broker_kind == "redis")
    other = room + "-other"
    async with (
        client.get(f"/api/v1/rooms/{room}/logs", headers=auth()) as a,
        client.get(f"/api/v1/rooms/{other}/logs", headers=auth()) as b,
    ):
        sa, sb = SSEStream(a), SSEStream(b)
        assert (await sa.next()).event == "connected"
        assert (await sb.next()).event == "connected"
        for i in range(5):
            r = await client.post(f"/api/v1/rooms/{room}/logs", json=sample_log(i), headers=auth())
            assert r.status == 202
            r = await client.post(
                f"/api/v1/rooms/{other}/logs", json=sample_log(100 + i), headers=auth()
            )
            assert r.status == 202
        got_a = [e.json()["message"] for e in await sa.collect(5)]
        got_b = [e.json()["message"] for e in await sb.collect(5)]
    assert got_a == [f"log {i}" for i in range(5)]
    assert got_b == [f"log {100 + i}" for i in range(5)]
