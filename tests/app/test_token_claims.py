"""Validly signed tokens with odd claims: 401 with the true reason, never a 500."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from tests.support.factories import SECRET, MakeClient, auth


def signed(**claims: Any) -> str:
    now = int(time.time())
    return jwt.encode({"rooms": "*", "publish": "*", "exp": now + 600, **claims}, SECRET)


@pytest.mark.parametrize(
    ("claims", "detail"),
    [
        ({"nbf": int(time.time()) + 3600}, "the token is not yet valid (nbf)"),
        ({"iat": int(time.time()) + 3600}, "the token is not yet valid (iat)"),
        ({"exp": "tomorrow"}, "the token's claims are malformed: Expiration Time claim (exp)"),
        ({"iat": "yesterday"}, "the token's claims are malformed: Issued At claim (iat)"),
    ],
    ids=["nbf-future", "iat-future", "exp-not-a-number", "iat-not-a-number"],
)
async def test_a_signed_token_with_a_bad_claim_is_401_saying_which(
    make_client: MakeClient, room: str, claims: dict[str, Any], detail: str
) -> None:
    client = await make_client(jwt_leeway=0.0)
    r = await client.get(f"/api/v1/rooms/{room}/logs/history", headers=auth(signed(**claims)))
    assert r.status == 401
    body = await r.json()
    assert body["error"] == "invalid_token"
    assert body["detail"].startswith(detail)
    assert "signature" not in body["detail"]


async def test_an_exp_of_400_digits_never_expires_and_is_no_500(
    make_client: MakeClient, room: str
) -> None:
    client = await make_client()
    tok = signed(exp=int("9" * 400))
    r = await client.get(f"/api/v1/rooms/{room}/logs/history", headers=auth(tok))
    assert r.status == 200, await r.text()
    async with client.get(f"/api/v1/rooms/{room}/logs", headers=auth(tok)) as resp:
        assert resp.status == 200
        assert (await resp.content.readline()).startswith(b"retry:")
