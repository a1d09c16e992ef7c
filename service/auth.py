"""Bearer tokens (PyJWT): where they are read from, how they are verified, what they grant.

The algorithm comes from an allowlist, and the key from the algorithm's family: an HS token is
checked against the shared secret only, an RS/PS/ES/EdDSA token against the public key or JWKS
only, so no token can choose its own verification (the classic "alg confusion").
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import math
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt
import orjson
from aiohttp import web

from .settings import Settings
from .token_cache import TokenCache

# PyJWT warns on every encode and decode with a short HS key (a traceback-like line per
# token); the service and the CLI say it once, in their own words, instead.
warnings.filterwarnings("ignore", message=".*HMAC key.*below the minimum recommended length")
SHORT_HS_KEY = 32  # bytes: RFC 7518 section 3.2 for HS256


class AuthError(Exception):
    """401: no token, or a token that does not verify. `detail` never contains the token."""

    def __init__(self, code: str, detail: str, *, transient: bool = False) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        # The token could not be checked *now* (JWKS unreachable): 503, not a final 401.
        self.transient = transient


@dataclass(frozen=True, slots=True)
class Grant:
    """What a verified token allows. Kept per distinct token in the cache (memory per idle
    stream), so only what a check reads: not the subject, which nothing uses."""

    rooms: frozenset[str]
    publish: frozenset[str]
    expires_at: float

    def can_read(self, room: str) -> bool:
        return "*" in self.rooms or room in self.rooms

    def can_publish(self, room: str) -> bool:
        return "*" in self.publish or room in self.publish


def token_from_request(request: web.Request, cookie_name: str) -> str | None:
    """Authorization header, else `access_token` query parameter (EventSource), else cookie."""
    header = request.headers.get("Authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    query = request.query.get("access_token")
    if query:
        return query
    return request.cookies.get(cookie_name) or None


# Seconds since 1970 beyond which an `exp` means "never" (the year 33658).
_FAR_FUTURE = 1e12


def _sentence(exc: Exception) -> str:
    """PyJWT's "The token is not yet valid (nbf)" as "the token is not yet valid (nbf)"."""
    text = str(exc)
    return text[:1].lower() + text[1:]


def _room_set(value: Any) -> frozenset[str]:
    if value == "*":
        return frozenset({"*"})
    if isinstance(value, str):
        return frozenset({value})
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return frozenset(value)
    return frozenset()


# Verified tokens kept, at most, and for how long at most (a JWKS key rotated out stops being
# trusted within this, even for a token that has not expired). At least twice MAX_CONNECTIONS:
# the cache always holds the newest half of what it can hold, so a reconnect storm of every
# stream this process can serve finds each token it checked in the last CACHE_SECONDS. Sized
# at the streams themselves, a storm of one more token than the cache holds missed them all
# (`bench.storm`: 10,000 streams and the warm-up's 10 tokens, ~120 µs of PyJWT a handshake).
CACHE_SIZE = 10_000
CACHE_SECONDS = 300.0


def cache_size(max_connections: int) -> int:
    return max(CACHE_SIZE, 2 * max_connections)


def cache_key(token: str) -> bytes:
    """What a token is kept by: its BLAKE2b-128 digest, 49 bytes where the token is ~240, and
    no token held in memory. The cache is memory for every stream up to CACHE_SIZE: keyed by
    the token it cost +0.96 KiB per idle stream in `bench.storm`, +0.29 with this key and the
    shared room sets."""
    return hashlib.blake2b(token.encode(), digest_size=16).digest()


class TokenVerifier:
    """Checks a token once: a browser's reconnects and a publisher's requests resend the same
    one, and a signature check is a fifth of a publish. The verified grant is kept until the
    token expires (bounded by CACHE_SECONDS and CACHE_SIZE); refusals are never kept."""

    def __init__(self, settings: Settings, secret: str | None = None) -> None:
        self._size = cache_size(settings.max_connections)
        self._cache = TokenCache(size=self._size, seconds=CACHE_SECONDS, leeway=settings.jwt_leeway)
        # One frozenset per distinct room set among the kept grants: a room's viewers hold
        # tokens with the same `rooms` claim, and a frozenset is ~220 bytes.
        self._sets: dict[frozenset[str], frozenset[str]] = {}
        self._algorithms = settings.jwt_algorithms
        self._secret = secret if secret is not None else settings.jwt_secret
        self._public_key = settings.jwt_public_key
        self._jwks = (
            jwt.PyJWKClient(settings.jwt_jwks_url, timeout=5) if settings.jwt_jwks_url else None
        )
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway

    async def verify(self, token: str) -> Grant:
        now = time.time()
        key = cache_key(token)
        hit = self._cache.get(key, now)
        if hit is not None:
            return hit
        grant = await self._verify(token)
        if len(self._sets) >= self._size:
            self._sets.clear()  # only sharing is lost
        rooms = self._sets.setdefault(grant.rooms, grant.rooms)
        publish = self._sets.setdefault(grant.publish, grant.publish)
        if rooms is not grant.rooms or publish is not grant.publish:
            grant = Grant(rooms, publish, grant.expires_at)
        self._cache.put(key, grant, now)
        return grant

    async def _verify(self, token: str) -> Grant:
        alg = _quick_alg(token)
        if alg is None:
            return await self._check(token, _strict_header(token).get("alg"))
        try:
            return await self._check(token, alg)
        except AuthError:
            # Refused: a token that PyJWT's strict look at the header would have refused
            # first is refused as that, whatever refused it here.
            _strict_header(token)
            raise

    async def _check(self, token: str, alg: object) -> Grant:
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise AuthError("invalid_token", "the token's algorithm is not allowed")
        key: Any
        if alg.startswith("HS"):
            key = self._secret
        elif self._jwks is not None:
            try:
                # PyJWKClient fetches over the network synchronously: keep it off the loop.
                key = (await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)).key
            except jwt.PyJWKClientConnectionError:
                raise AuthError(
                    "auth_unavailable", "the JWKS endpoint cannot be reached", transient=True
                ) from None
            except jwt.PyJWKClientError:
                raise AuthError("invalid_token", "no JWKS key matches the token") from None
        else:
            key = self._public_key
        if key is None:
            raise AuthError("invalid_token", "the token's algorithm is not allowed")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["exp"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token_expired", "the token has expired") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError("invalid_token", f"the token has no {exc.claim!r} claim") from None
        except jwt.InvalidIssuerError:
            raise AuthError("invalid_token", "the token's issuer is not accepted") from None
        except jwt.InvalidAudienceError:
            raise AuthError("invalid_token", "the token's audience is not accepted") from None
        except jwt.InvalidSignatureError:
            raise AuthError("invalid_token", "the token's signature does not verify") from None
        except jwt.ImmatureSignatureError as exc:  # nbf or iat in the future
            raise AuthError("invalid_token", _sentence(exc)) from None
        except (jwt.DecodeError, jwt.InvalidIssuedAtError) as exc:  # a claim of the wrong type
            raise AuthError("invalid_token", f"the token's claims are malformed: {exc}") from None
        except jwt.PyJWTError as exc:
            raise AuthError("invalid_token", f"the token is not valid: {exc}") from None
        exp = claims["exp"]  # a number: PyJWT checked it
        return Grant(
            rooms=_room_set(claims.get("rooms")),
            publish=_room_set(claims.get("publish")),
            # An `exp` past any date (a 400-digit number) is no float: it never expires.
            expires_at=float(exp) if exp < _FAR_FUTURE else math.inf,
        )


def _quick_alg(token: str) -> str | None:
    """The header's `alg`, read without PyJWT's strict checks of the header (a third of a
    token check: `decode` makes them anyway, and a token that fails them is refused); None
    where it does not read as a JSON object with a string `alg`."""
    head, dot, _ = token.partition(".")
    if not dot or not head.isascii():
        return None
    try:
        header = orjson.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, binascii.Error):
        return None
    alg = header.get("alg") if isinstance(header, dict) else None
    return alg if isinstance(alg, str) else None


def _strict_header(token: str) -> dict[str, Any]:
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise AuthError("invalid_token", "the token is not a well-formed JWT") from None


def mint_token(
    secret: str,
    *,
    rooms: Iterable[str] = ("*",),
    publish: Iterable[str] = (),
    ttl: float = 3600,
    sub: str | None = None,
    algorithm: str = "HS256",
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    """An HS token for development, tests and the `roomlogs token` command."""
    now = int(time.time())
    claims: dict[str, Any] = {"iat": now, "exp": now + int(ttl), "rooms": _claim(rooms)}
    publish_claim = _claim(publish)
    if publish_claim:
        claims["publish"] = publish_claim
    if sub:
        claims["sub"] = sub
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm=algorithm)


def _claim(rooms: Iterable[str]) -> str | list[str]:
    values = list(rooms)
    return "*" if "*" in values else values
