"""`Idempotency-Key` on publish: a retry whose first answer was lost stores nothing twice."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from service.publisher import Publisher
from tests.support.factories import MakeClient, auth, sample_log, token

LOGS = "/api/v1/rooms/{}/logs"


async def _history(client: Any, room: str) -> list[dict[str, Any]]:
    r = await client.get(LOGS.format(room) + "/history", headers=auth())
    assert r.status == 200
    logs: list[dict[str, Any]] = (await r.json())["logs"]
    return logs


async def test_a_key_sent_again_returns_the_first_ids_and_stores_nothing(
    make_client: MakeClient, broker_kind: str, room: str
) -> None:
    client = await make_client(redis=broker_kind == "redis")
    batch = [sample_log(0), sample_log(1)]
    headers = {**auth(), "Idempotency-Key": "5f0c1c1e-8a4b-4c57-9e59-2d2b4c0d6a11"}
    first = await client.post(LOGS.format(room), json=batch, headers=headers)
    assert first.status == 202
    body = await first.json()
    assert "replayed" not in body
    again = await client.post(LOGS.format(room), json=batch, headers=headers)
    assert again.status == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await again.json() == {"roomId": room, "ids": body["ids"], "replayed": True}
    assert [log["id"] for log in await _history(client, room)] == body["ids"]
    # The same key in another room is another publish.
    other = await client.post(LOGS.format(room + "-b"), json=batch, headers=headers)
    assert other.status == 202
    assert "replayed" not in await other.json()


async def test_a_retry_of_logs_without_timestamp_is_the_same_publish(
    make_client: MakeClient, broker_kind: str, room: str
) -> None:
    """The service fills in a missing `timestamp` anew each time; the key compares the request
    as sent, so the retry is still recognised (the README's quick-tour body has none)."""
    client = await make_client(redis=broker_kind == "redis")
    log = {"agentType": "code", "level": "info", "message": "no timestamp", "metadata": {}}
    headers = {**auth(), "Idempotency-Key": "no-ts-1"}
    first = await client.post(LOGS.format(room), json=log, headers=headers)
    again = await client.post(LOGS.format(room), json=log, headers=headers)
    assert first.status == again.status == 202
    assert (await again.json())["ids"] == (await first.json())["ids"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(await _history(client, room)) == 1


async def test_a_key_reused_for_other_logs_is_refused_and_stores_nothing(
    make_client: MakeClient, broker_kind: str, room: str
) -> None:
    client = await make_client(redis=broker_kind == "redis")
    headers = {**auth(), "Idempotency-Key": "job-7:step-3"}
    assert (await client.post(LOGS.format(room), json=sample_log(0), headers=headers)).status == 202
    r = await client.post(LOGS.format(room), json=sample_log(1), headers=headers)
    assert r.status == 422
    assert (await r.json())["error"] == "idempotency_key_reused"
    assert [log["message"] for log in await _history(client, room)] == ["log 0"]


@pytest.mark.parametrize("key", ["", "has space", "x" * 129, "ключ", "a/b"])
async def test_a_malformed_key_is_refused_before_anything_is_stored(
    make_client: MakeClient, room: str, key: str
) -> None:
    client = await make_client(redis=True)
    r = await client.post(
        LOGS.format(room), json=sample_log(0), headers={**auth(), "Idempotency-Key": key}
    )
    assert r.status == 400
    assert (await r.json())["error"] == "invalid_idempotency_key"
    assert await _history(client, room) == []


async def test_the_http_publisher_retries_a_lost_answer_without_storing_twice(
    make_client: MakeClient, room: str
) -> None:
    """A real proxy in front of the service forwards the first publish and then answers 502,
    as a load balancer does when the gateway's connection drops after it stored the log."""
    client = await make_client(redis=True)
    upstream = str(client.make_url("/")).rstrip("/")
    answers: list[int] = []

    async def proxy(request: web.Request) -> web.Response:
        async with aiohttp.ClientSession() as http:
            async with http.request(
                request.method,
                upstream + request.path_qs,
                data=await request.read(),
                headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
            ) as r:
                body = await r.read()
                status = r.status
                if not answers and request.method == "POST":
                    status, body = 502, b"<html>502 Bad Gateway</html>"  # stored, answer lost
                answers.append(status)
                return web.Response(status=status, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy)
    server = TestServer(app)
    await server.start_server()
    try:
        async with Publisher(url=str(server.make_url("/")), token=token()) as publisher:
            stored_id = await publisher.emit(room, "exactly once")
    finally:
        await server.close()
    assert answers == [502, 202]
    history = await _history(client, room)
    assert [(log["id"], log["message"]) for log in history] == [(stored_id, "exactly once")]
