"""Operators' view of the real process: JSON logs with request id, room, status and duration;
tokens never shown, in either log format (that a stream ends when its token expires:
tests/app/test_auth.py)."""

from __future__ import annotations

import uuid

import aiohttp
import orjson
import pytest

from tests.support.aio import poll_until
from tests.support.factories import SECRET, StartService, auth, token
from tests.support.sse import SSEStream


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


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_tokens_never_appear_in_server_output(
    service: StartService, room: str, log_format: str
) -> None:
    srv = await service(LOG_FORMAT=log_format, LOG_LEVEL="DEBUG")
    query_tok = token(rooms=[room], sub=f"query-{uuid.uuid4()}")
    header_tok = token(rooms=[room], sub=f"header-{uuid.uuid4()}")
    bad_tok = f"garbage-{uuid.uuid4()}"
    base = f"{srv.url}/api/v1/rooms/{room}/logs"
    async with aiohttp.ClientSession() as http:
        async with http.get(base, params={"access_token": query_tok}) as resp:
            assert resp.status == 200
            assert (await SSEStream(resp).next()).event == "connected"
        async with http.get(f"{base}/history", params={"access_token": query_tok}) as resp:
            assert resp.status == 200
        async with http.get(f"{base}/history", params={"access_token": bad_tok}) as resp:
            assert resp.status == 401
        async with http.get(f"{base}/history?x=1&ACCESS_TOKEN={query_tok}") as resp:
            assert resp.status == 401  # the parameter name is case-sensitive
        async with http.get(f"{base}/history", headers=auth(header_tok)) as resp:
            assert resp.status == 200
    # Stopping the process (and waiting for it to exit) flushes every access-log line.
    assert srv.stop() == 0
    output = srv.output()
    # The history requests were logged (a stream its client left is not access-logged at all).
    assert output.count("/history?access_token=[redacted]") >= 2, output
    assert "ACCESS_TOKEN=[redacted]" in output, output
    for secret in (query_tok, header_tok, bad_tok, SECRET):
        assert secret not in output
    for part in query_tok.split(".")[1:] + header_tok.split(".")[1:]:
        assert part not in output
