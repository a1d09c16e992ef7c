"""The verified-token cache: a token is checked once, trusted only until it expires (or for
CACHE_SECONDS), refusals are never kept, and the cache is bounded."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import pytest

from service import auth
from service.auth import AuthError, Grant, TokenVerifier, mint_token
from service.settings import Settings
from service.token_cache import TokenCache

SECRET = "cache-test-secret-cache-test-secret"


def _verifier(**kw: object) -> TokenVerifier:
    return TokenVerifier(Settings(jwt_secret=SECRET, **kw))  # type: ignore[arg-type]


async def test_a_verified_token_is_not_checked_again() -> None:
    verifier = _verifier()
    token = mint_token(SECRET, rooms=["a"], ttl=600)
    grant = await verifier.verify(token)
    verifier._secret = "another-secret-another-secret-another"  # a second check would fail
    assert await verifier.verify(token) is grant
    with pytest.raises(AuthError):
        await verifier.verify(mint_token(SECRET, rooms=["b"], ttl=600))


async def test_a_cached_token_stops_working_when_it_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verifier = _verifier(jwt_leeway=0.0)
    token = mint_token(SECRET, ttl=60)
    grant = await verifier.verify(token)
    assert await verifier.verify(token) is grant
    # Past its expiry the grant is not served from the cache: the token is checked again
    # (here against another secret, so that the second check shows).
    verifier._secret = "another-secret-another-secret-another"
    later = grant.expires_at + 1
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(AuthError):
        await verifier.verify(token)
    assert auth.cache_key(token) not in verifier._cache


async def test_a_long_lived_token_is_checked_again_after_cache_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verifier = _verifier()
    token = mint_token(SECRET, ttl=86_400)
    await verifier.verify(token)
    verifier._secret = "rotated-secret-rotated-secret-rotated"
    later = time.time() + auth.CACHE_SECONDS + 1
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(AuthError):
        await verifier.verify(token)


async def test_refusals_are_not_kept_and_the_cache_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(auth, "CACHE_SIZE", 6)
    verifier = _verifier(max_connections=3)
    bad = mint_token("wrong-secret-wrong-secret-wrong-secret", ttl=600)
    for _ in range(2):
        with pytest.raises(AuthError):
            await verifier.verify(bad)
    assert len(verifier._cache) == 0
    tokens = [mint_token(SECRET, rooms=[f"r{i}"], ttl=600) for i in range(12)]
    for token in tokens:
        await verifier.verify(token)
        assert len(verifier._cache) <= 6
    # Full, it drops its older half, not everything: the newest six are still kept.
    assert verifier._cache.digests() == [auth.cache_key(t) for t in tokens[-6:]]


async def test_the_cache_keeps_no_token_and_one_room_set_per_distinct_claim() -> None:
    verifier = _verifier()
    one = mint_token(SECRET, rooms=["a", "b"], ttl=600, sub="one")
    two = mint_token(SECRET, rooms=["b", "a"], ttl=600, sub="two")
    first, second = await verifier.verify(one), await verifier.verify(two)
    assert first.rooms is second.rooms  # ~220 bytes kept once, not per token
    assert first is not second
    assert await verifier.verify(two) is second
    assert all(isinstance(k, bytes) and len(k) == 16 for k in verifier._cache.digests())
    assert one not in repr(verifier._cache.digests())


def test_no_grant_is_served_cache_seconds_after_it_was_checked() -> None:
    """Two generations of CACHE_SECONDS / 2: a grant put at the very start of one is still
    served just before the end of the next, and not a moment later."""
    cache = TokenCache(size=100, seconds=300.0, leeway=0.0)
    grant = Grant(frozenset(), frozenset(), expires_at=math.inf)
    start = 150.0 * 10_000_000  # a period's first moment
    cache.put(b"k", grant, start)
    assert cache.get(b"k", start + 299.9) is grant
    assert cache.get(b"k", start + 300.0) is None
    cache.put(b"k", grant, start + 300.0)
    assert cache.get(b"k", start + 10_000.0) is None  # idle for long: both generations go


def test_a_full_cache_keeps_both_halves_into_the_next_period() -> None:
    """A storm of reconnects a minute after its streams opened: the older half of a cache
    filled within one period is still served in the next (it was put less than
    CACHE_SECONDS ago), and goes at the end of that one."""
    cache = TokenCache(size=4, seconds=300.0, leeway=0.0)
    grant = Grant(frozenset(), frozenset(), expires_at=math.inf)
    start = 150.0 * 10_000_000
    keys = [b"k%d" % i for i in range(4)]
    for i, key in enumerate(keys):
        cache.put(key, grant, start + 100.0 + i)  # late in one period: two generations
    later = start + 160.0  # the next period
    assert all(cache.get(key, later) is grant for key in keys)
    assert cache.digests() == keys
    assert all(cache.get(key, start + 299.9) is grant for key in keys)
    assert all(cache.get(key, start + 300.0) is None for key in keys)


def test_a_grant_put_in_a_later_period_outlives_the_older_generations() -> None:
    cache = TokenCache(size=100, seconds=300.0, leeway=0.0)
    grant = Grant(frozenset(), frozenset(), expires_at=math.inf)
    start = 150.0 * 10_000_000
    cache.put(b"early", grant, start + 1.0)
    cache.put(b"late", grant, start + 151.0)  # next period: a generation of its own
    assert cache.get(b"early", start + 299.0) is grant
    assert cache.get(b"early", start + 300.0) is None
    assert cache.get(b"late", start + 449.9) is grant
    assert cache.get(b"late", start + 450.0) is None


def test_the_cache_holds_a_storm_of_every_stream_the_process_can_serve() -> None:
    """Twice MAX_CONNECTIONS at least: the newest half always stays, so every stream's token
    checked in the last CACHE_SECONDS is still there when they all come back at once."""
    assert auth.cache_size(100) == auth.CACHE_SIZE
    assert auth.cache_size(20_000) == 40_000
    cache = TokenCache(size=auth.cache_size(6_000), seconds=300.0, leeway=0.0)
    grant = Grant(frozenset(), frozenset(), expires_at=math.inf)
    now = time.time()
    keys = [b"warm-up-%d" % i for i in range(10)] + [b"stream-%d" % i for i in range(6_000)]
    for key in keys:
        cache.put(key, grant, now)
    assert all(cache.get(key, now + 60) is grant for key in keys[10:])


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: "not-a-jwt",
        lambda t: "!" + t,  # read by the quick look at the header, refused by PyJWT's
        lambda t: t.replace(".", "=.", 1),  # padding PyJWT refuses here
        lambda t: "e30." + t.partition(".")[2],  # `{}`: no alg at all
        lambda t: "bnVsbA." + t.partition(".")[2],  # `null`: not an object
    ],
)
async def test_a_malformed_token_is_refused_as_not_a_jwt_first(
    mangle: Callable[[str], str],
) -> None:
    """The quick look at the header picks the key; a refusal still says first what PyJWT's
    strict look at the header says."""
    import jwt

    token = mangle(mint_token(SECRET, ttl=600))
    try:
        jwt.get_unverified_header(token)
        expected = "the token's algorithm is not allowed"
    except jwt.PyJWTError:
        expected = "the token is not a well-formed JWT"
    with pytest.raises(AuthError) as refused:
        await _verifier().verify(token)
    assert refused.value.detail == expected


async def test_the_header_read_quickly_still_decides_nothing_alone() -> None:
    """An allowed alg in the header of a token signed otherwise is refused by PyJWT's check."""
    token = mint_token("another-secret-another-secret-another", ttl=600)
    with pytest.raises(AuthError) as refused:
        await _verifier().verify(token)
    assert refused.value.detail == "the token's signature does not verify"
