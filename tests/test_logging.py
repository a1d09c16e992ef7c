"""Operators' view: JSON logs with request id, room, status and duration; tokens never shown;
streams end when their token expires."""

from __future__ import annotations

import aiohttp
import orjson

from .conftest import MakeClient, StartService, auth, token
from .support import SSEStream, poll_until


async def test_json_logs_carry_request_fields_and_never_a_token(
    service: StartService, room: str
) -> None:
    srv = await service(LOG_FORMAT="json")
    secret_token = token()
    url = f"{srv.url}/api/v1/rooms/{room}/logs"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}?access_token={secret_token}") as resp:
            rid = resp.headers["X-Request-Id"]
            assert (await SSEStream(resp).next()).event == "connected"
        async with http.get(
            url + "/history", headers={**auth(secret_token), "X-Request-Id": "lb-req-42"}
        ) as r:
            assert r.status == 200
            assert r.headers["X-Request-Id"] == "lb-req-42"
        async with http.get(f"http://127.0.0.1:{srv.port}/healthz") as r:
            assert r.status == 200

        def lines() -> list[dict[str, object]]:
            return [orjson.loads(line) for line in srv.output().splitlines() if line.strip()]

        async def logged() -> bool:
            return any(str(e.get("message")).startswith("stream closed") for e in lines())

        await poll_until(logged)
    output = srv.output()
    assert secret_token not in output
    entries = lines()  # every line is one JSON object
    access = [e for e in entries if e["logger"] == "aiohttp.access"]
    history = next(e for e in access if str(e["path"]).endswith("/history"))
    assert history["request_id"] == "lb-req-42"
    assert history["room"] == room
    assert history["status"] == 200
    assert isinstance(history["duration_ms"], float)
    closed = next(e for e in entries if str(e["message"]).startswith("stream closed"))
    assert closed["room"] == room
    assert closed["request_id"] == rid
    assert closed["reason"] == "client_gone"


async def test_a_stream_ends_when_its_token_expires(make_client: MakeClient, room: str) -> None:
    client = await make_client(jwt_leeway=0.0)
    short = token(ttl=2)
    async with client.get(f"/api/v1/rooms/{room}/logs", headers=auth(short)) as resp:
        sse = SSEStream(resp)
        assert (await sse.next()).event == "connected"
        ended = await sse.next(timeout=10)
        assert ended.event == "unavailable"
        assert ended.json()["reason"] == "token_expired"
        assert await resp.content.read() == b""  # and the stream is over
