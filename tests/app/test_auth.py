"""Tokens: where they are read from, which algorithms and keys verify them, what they grant,
and that a stream ends when its token expires.

Most tests use the history route (a plain JSON GET) on the in-process app; the JWKS test serves
its key set from a real local aiohttp server. That tokens never reach the server's output is
checked on the real process, in tests/process/test_logging.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
import orjson
import pytest
from aiohttp import ClientResponse, web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import RSAAlgorithm
from pytest_aiohttp import AiohttpServer

from tests.support.factories import SECRET, Client, MakeClient, auth, sample_log, token
from tests.support.sse import SSEStream

# Long enough for HS512 (PyJWT warns below 64 bytes, and warnings are errors here).
LONG_SECRET = "a-shared-secret-long-enough-for-every-hs-algorithm-" + "s" * 32


def history_path(room: str) -> str:
    return f"/api/v1/rooms/{room}/logs/history"


async def status_of(client: Client, room: str, **kw: Any) -> int:
    async with client.get(history_path(room), **kw) as resp:
        await resp.read()
        return resp.status


async def expect_401(resp: ClientResponse, code: str = "invalid_token") -> str:
    assert resp.status == 401, await resp.text()
    assert resp.headers["WWW-Authenticate"].startswith('Bearer realm="roomlogs"')
    body = await resp.json()
    assert body["error"] == code
    return str(body["detail"])


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iat": now, "exp": now + 600, "rooms": "*", "publish": "*", **extra}


# -- where the token comes from --------------------------------------------------------------------


def place(where: str, tok: str, cookie: str = "roomlogs_token") -> dict[str, Any]:
    """Request kwargs that carry `tok` in the header, the query or the cookie."""
    if where == "header":
        return {"headers": auth(tok)}
    if where == "query":
        return {"params": {"access_token": tok}}
    assert where == "cookie"
    return {"headers": {"Cookie": f"{cookie}={tok}"}}


def merge(*parts: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"headers": {}, "params": {}}
    for part in parts:
        for key, value in part.items():
            out[key].update(value)
    return out


@pytest.mark.parametrize("where", ["header", "query", "cookie"])
async def test_token_is_read_from(make_client: MakeClient, room: str, where: str) -> None:
    client = await make_client()
    assert await status_of(client, room, **place(where, token(rooms=[room]))) == 200
    assert await status_of(client, room, **place(where, token(rooms=["other-room"]))) == 403


@pytest.mark.parametrize(
    ("first", "second"), [("header", "query"), ("header", "cookie"), ("query", "cookie")]
)
async def test_token_source_precedence(
    make_client: MakeClient, room: str, first: str, second: str
) -> None:
    """Header, then `access_token`, then cookie: the first present one is the only one used."""
    client = await make_client()
    mine, other = token(rooms=[room]), token(rooms=["other-room"])
    winner_allows = merge(place(first, mine), place(second, other))
    winner_denies = merge(place(first, other), place(second, mine))
    assert await status_of(client, room, **winner_allows) == 200
    assert await status_of(client, room, **winner_denies) == 403


async def test_invalid_header_token_is_not_rescued_by_a_valid_query_token(
    make_client: MakeClient, room: str
) -> None:
    client = await make_client()
    kw = merge(place("header", "not-a-jwt"), place("query", token()))
    async with client.get(history_path(room), **kw) as resp:
        await expect_401(resp)


async def test_non_bearer_authorization_falls_through_to_the_query(
    make_client: MakeClient, room: str
) -> None:
    client = await make_client()
    kw = merge({"headers": {"Authorization": "Basic dXNlcjpwYXNz"}}, place("query", token()))
    assert await status_of(client, room, **kw) == 200


async def test_bearer_scheme_is_case_insensitive(make_client: MakeClient, room: str) -> None:
    client = await make_client()
    headers = {"Authorization": f"bearer {token()}"}
    assert await status_of(client, room, headers=headers) == 200


async def test_auth_cookie_setting_renames_the_cookie(make_client: MakeClient, room: str) -> None:
    client = await make_client(auth_cookie="rl_session")
    assert await status_of(client, room, **place("cookie", token(), "rl_session")) == 200
    async with client.get(history_path(room), **place("cookie", token())) as resp:
        detail = await expect_401(resp, "missing_token")
    assert "rl_session" in detail


async def test_stream_accepts_the_query_token(make_client: MakeClient, room: str) -> None:
    """What a browser's EventSource does: no headers, the token in the URL."""
    client = await make_client()
    url = f"/api/v1/rooms/{room}/logs"
    async with client.get(url, params={"access_token": token(rooms=[room])}) as resp:
        assert resp.status == 200
        assert (await SSEStream(resp).next()).event == "connected"


# -- HS algorithms ---------------------------------------------------------------------------------

HS = ("HS256", "HS384", "HS512")


@pytest.mark.parametrize("alg", HS)
async def test_hs_algorithm_in_allowlist_verifies(
    make_client: MakeClient, room: str, alg: str
) -> None:
    client = await make_client(jwt_secret=LONG_SECRET, jwt_algorithms=HS)
    tok = jwt.encode(claims(), LONG_SECRET, algorithm=alg)
    assert await status_of(client, room, headers=auth(tok)) == 200


@pytest.mark.parametrize(
    ("allowed", "used"),
    [("HS256", "HS384"), ("HS256", "HS512"), ("HS384", "HS256"), ("HS512", "HS256")],
)
async def test_hs_algorithm_outside_allowlist_is_401(
    make_client: MakeClient, room: str, allowed: str, used: str
) -> None:
    client = await make_client(jwt_secret=LONG_SECRET, jwt_algorithms=(allowed,))
    tok = jwt.encode(claims(), LONG_SECRET, algorithm=used)
    async with client.get(history_path(room), headers=auth(tok)) as resp:
        detail = await expect_401(resp)
    assert "algorithm" in detail


@pytest.mark.parametrize("alg", HS)
async def test_hs_token_with_another_secret_is_401(
    make_client: MakeClient, room: str, alg: str
) -> None:
    client = await make_client(jwt_secret=LONG_SECRET, jwt_algorithms=HS)
    tok = jwt.encode(claims(), LONG_SECRET.upper(), algorithm=alg)
    async with client.get(history_path(room), headers=auth(tok)) as resp:
        await expect_401(resp)


# -- public keys -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPair:
    alg: str
    private: Any
    public_pem: str


def _pem(public: Any) -> str:
    return str(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
    )


def make_keypair(alg: str) -> KeyPair:
    private: Any
    if alg.startswith("RS"):
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        private = ed25519.Ed25519PrivateKey.generate()
    return KeyPair(alg, private, _pem(private.public_key()))


@pytest.fixture(scope="module")
def rsa_keys() -> KeyPair:
    return make_keypair("RS256")


@pytest.fixture(scope="module")
def other_rsa_keys() -> KeyPair:
    return make_keypair("RS256")


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
async def test_public_key_verifies_its_algorithm(
    make_client: MakeClient, room: str, alg: str
) -> None:
    keys, stranger = make_keypair(alg), make_keypair(alg)
    client = await make_client(
        jwt_secret=None, jwt_algorithms=(alg,), jwt_public_key=keys.public_pem
    )
    good = jwt.encode(claims(), keys.private, algorithm=alg)
    assert await status_of(client, room, headers=auth(good)) == 200
    forged = jwt.encode(claims(), stranger.private, algorithm=alg)
    async with client.get(history_path(room), headers=auth(forged)) as resp:
        await expect_401(resp)


async def test_rs256_only_refuses_hs256_tokens(
    make_client: MakeClient, room: str, rsa_keys: KeyPair
) -> None:
    client = await make_client(jwt_algorithms=("RS256",), jwt_public_key=rsa_keys.public_pem)
    async with client.get(history_path(room), headers=auth(token())) as resp:
        await expect_401(resp)


def hs256_signed_with(secret: bytes, payload: dict[str, Any]) -> str:
    """An HS256 JWT built by hand: PyJWT itself refuses a PEM key as an HMAC secret."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(orjson.dumps({"alg": "HS256", "typ": "JWT"}))
    body = b64(orjson.dumps(payload))
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


@pytest.mark.parametrize(
    ("algorithms", "secret"),
    [(("RS256",), None), (("RS256",), SECRET), (("HS256", "RS256"), SECRET)],
    ids=["rs256-only", "rs256-only-with-secret", "hs256-and-rs256"],
)
async def test_alg_confusion_hs256_signed_with_the_public_key_is_401(
    make_client: MakeClient,
    room: str,
    rsa_keys: KeyPair,
    algorithms: tuple[str, ...],
    secret: str | None,
) -> None:
    client = await make_client(
        jwt_secret=secret, jwt_algorithms=algorithms, jwt_public_key=rsa_keys.public_pem
    )
    forged = hs256_signed_with(rsa_keys.public_pem.encode(), claims())
    async with client.get(history_path(room), headers=auth(forged)) as resp:
        await expect_401(resp)
    # The same configuration does accept a real RS256 token.
    good = jwt.encode(claims(), rsa_keys.private, algorithm="RS256")
    assert await status_of(client, room, headers=auth(good)) == 200


# -- JWKS ------------------------------------------------------------------------------------------


@dataclass
class Jwks:
    url: str
    fetches: int = 0


@pytest.fixture
async def jwks(aiohttp_server: AiohttpServer, rsa_keys: KeyPair) -> Jwks:
    """A real HTTP server on a local port serving the key set with `kid: k1`."""
    jwk = RSAAlgorithm.to_jwk(rsa_keys.private.public_key(), as_dict=True)
    key_set = {"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}
    state = Jwks(url="")

    async def serve(request: web.Request) -> web.Response:
        state.fetches += 1
        return web.json_response(key_set)

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", serve)
    server = await aiohttp_server(app)
    state.url = str(server.make_url("/.well-known/jwks.json"))
    return state


async def jwks_client(make_client: MakeClient, jwks: Jwks) -> Client:
    return await make_client(jwt_secret=None, jwt_algorithms=("RS256",), jwt_jwks_url=jwks.url)


async def test_jwks_token_with_matching_kid_verifies(
    make_client: MakeClient, room: str, jwks: Jwks, rsa_keys: KeyPair
) -> None:
    client = await jwks_client(make_client, jwks)
    tok = jwt.encode(claims(), rsa_keys.private, algorithm="RS256", headers={"kid": "k1"})
    assert await status_of(client, room, headers=auth(tok)) == 200
    assert jwks.fetches >= 1


@pytest.mark.parametrize("kid", ["k2", "", None], ids=["unknown-kid", "empty-kid", "no-kid"])
async def test_jwks_token_without_a_matching_kid_is_401(
    make_client: MakeClient, room: str, jwks: Jwks, rsa_keys: KeyPair, kid: str | None
) -> None:
    client = await jwks_client(make_client, jwks)
    headers = {} if kid is None else {"kid": kid}
    tok = jwt.encode(claims(), rsa_keys.private, algorithm="RS256", headers=headers)
    async with client.get(history_path(room), headers=auth(tok)) as resp:
        await expect_401(resp)


async def test_jwks_token_with_right_kid_but_another_key_is_401(
    make_client: MakeClient,
    room: str,
    jwks: Jwks,
    other_rsa_keys: KeyPair,
) -> None:
    client = await jwks_client(make_client, jwks)
    tok = jwt.encode(claims(), other_rsa_keys.private, algorithm="RS256", headers={"kid": "k1"})
    async with client.get(history_path(room), headers=auth(tok)) as resp:
        await expect_401(resp)


async def test_unknown_kids_do_not_hammer_the_jwks_endpoint(
    make_client: MakeClient, room: str, jwks: Jwks, rsa_keys: KeyPair
) -> None:
    client = await jwks_client(make_client, jwks)
    for i in range(10):
        tok = jwt.encode(claims(), rsa_keys.private, algorithm="RS256", headers={"kid": f"x{i}"})
        async with client.get(history_path(room), headers=auth(tok)) as resp:
            await expect_401(resp)
    assert 1 <= jwks.fetches <= 2


async def test_jwks_alg_confusion_is_401(make_client: MakeClient, room: str, jwks: Jwks) -> None:
    client = await jwks_client(make_client, jwks)
    forged = hs256_signed_with(b"k1", claims())
    async with client.get(history_path(room), headers=auth(forged)) as resp:
        await expect_401(resp)


# -- issuer and audience ---------------------------------------------------------------------------

ISSUER, AUDIENCE = "https://auth.example.test", "roomlogs"


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        ({"iss": ISSUER, "aud": AUDIENCE}, 200),
        ({"iss": ISSUER, "aud": [AUDIENCE, "other-api"]}, 200),
        ({"iss": "https://evil.example.test", "aud": AUDIENCE}, 401),
        ({"aud": AUDIENCE}, 401),
        ({"iss": ISSUER, "aud": "other-api"}, 401),
        ({"iss": ISSUER}, 401),
    ],
    ids=["both-right", "aud-list", "wrong-iss", "no-iss", "wrong-aud", "no-aud"],
)
async def test_issuer_and_audience_are_checked(
    make_client: MakeClient, room: str, extra: dict[str, Any], status: int
) -> None:
    client = await make_client(jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    tok = jwt.encode(claims(**extra), SECRET, algorithm="HS256")
    async with client.get(history_path(room), headers=auth(tok)) as resp:
        if status == 401:
            await expect_401(resp)
        else:
            assert resp.status == status, await resp.text()


async def test_issuer_and_audience_are_not_required_when_not_configured(
    make_client: MakeClient, room: str
) -> None:
    client = await make_client()
    tok = jwt.encode(claims(iss="anyone", aud="anything"), SECRET, algorithm="HS256")
    assert await status_of(client, room, headers=auth(tok)) == 200


async def test_mint_token_issuer_and_audience_pass_the_check(
    make_client: MakeClient, room: str
) -> None:
    client = await make_client(jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    tok = token(issuer=ISSUER, audience=AUDIENCE)
    assert await status_of(client, room, headers=auth(tok)) == 200


# -- what a token grants ---------------------------------------------------------------------------


@pytest.mark.parametrize("rooms", ["*", ["*"], ["some-room", "*"]], ids=["str", "list", "mixed"])
async def test_star_rooms_claim_reads_every_room(make_client: MakeClient, rooms: Any) -> None:
    client = await make_client()
    tok = jwt.encode(claims(rooms=rooms, publish=[]), SECRET, algorithm="HS256")
    for room in ("a", f"room-{uuid.uuid4()}", "Z" * 128):
        assert await status_of(client, room, headers=auth(tok)) == 200
        url = f"/api/v1/rooms/{room}/logs"
        async with client.get(url, headers=auth(tok)) as resp:
            assert resp.status == 200
            assert (await SSEStream(resp).next()).event == "connected"


async def test_star_publish_claim_publishes_everywhere_and_rooms_star_does_not(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    reader = jwt.encode(claims(rooms="*", publish=None), SECRET, algorithm="HS256")
    writer = jwt.encode(claims(rooms=[], publish="*"), SECRET, algorithm="HS256")
    for room in ("a", f"room-{uuid.uuid4()}"):
        url = f"/api/v1/rooms/{room}/logs"
        async with client.post(url, json=sample_log(1), headers=auth(writer)) as resp:
            assert resp.status == 202, await resp.text()
        async with client.post(url, json=sample_log(1), headers=auth(reader)) as resp:
            assert resp.status == 403, await resp.text()


@pytest.mark.parametrize("rooms", [42, {"room": True}, [1, 2], None], ids=str)
async def test_malformed_rooms_claim_grants_nothing(
    make_client: MakeClient, room: str, rooms: Any
) -> None:
    client = await make_client()
    tok = jwt.encode(claims(rooms=rooms), SECRET, algorithm="HS256")
    assert await status_of(client, room, headers=auth(tok)) == 403


# -- a token's lifetime ----------------------------------------------------------------------------


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
