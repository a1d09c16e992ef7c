"""CORS_ORIGINS: allowed origins get credentials-enabled CORS on every answer, others none."""

from __future__ import annotations

from tests.support.factories import MakeClient, auth
from tests.support.sse import SSEStream

ALLOWED = "http://viewer.localhost:5173"
OTHER = "http://evil.localhost:6666"


async def test_preflight_for_publish_is_answered_for_an_allowed_origin_only(
    make_client: MakeClient, room: str
) -> None:
    client = await make_client(cors_origins=(ALLOWED,))
    url = f"/api/v1/rooms/{room}/logs"
    preflight = {"Access-Control-Request-Method": "POST"}
    r = await client.options(url, headers={"Origin": ALLOWED, **preflight})
    assert r.status == 204
    assert r.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert r.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    r = await client.options(url, headers={"Origin": OTHER, **preflight})
    assert "Access-Control-Allow-Origin" not in r.headers


async def test_errors_history_and_refusals_carry_cors_headers_for_allowed_origins(
    make_client: MakeClient, room: str
) -> None:
    client = await make_client(cors_origins=(ALLOWED,), max_connections=1)
    base = f"/api/v1/rooms/{room}/logs"
    r = await client.get(base, headers={"Origin": ALLOWED})  # no token: 401
    assert r.status == 401
    assert r.headers["Access-Control-Allow-Origin"] == ALLOWED
    r = await client.get(base + "/history", headers={"Origin": ALLOWED, **auth()})
    assert r.status == 200
    assert r.headers["Access-Control-Allow-Origin"] == ALLOWED
    r = await client.get(base + "/history", headers={"Origin": OTHER, **auth()})
    assert "Access-Control-Allow-Origin" not in r.headers
    async with client.get(base, headers={"Origin": ALLOWED, **auth()}) as first:
        assert first.headers["Access-Control-Allow-Origin"] == ALLOWED
        assert (await SSEStream(first).next()).event == "connected"
        # Over MAX_CONNECTIONS: the transient refusal must be readable cross-origin too.
        async with client.get(base, headers={"Origin": ALLOWED, **auth()}) as refused:
            assert refused.status == 200
            assert refused.headers["Access-Control-Allow-Origin"] == ALLOWED
            ev = await SSEStream(refused).next()
            assert ev.event == "unavailable"
            assert ev.json()["reason"] == "max_connections"
