"""The verified-token cache of `service.auth`: a reconnecting client's token is not checked
again until it expires; the cache is bounded; refusals and tokens are never kept or shown."""

from __future__ import annotations

import logging
import time

import pytest

from service.auth import AuthError, Grant, GrantCache, TokenVerifier, mint_token
from service.settings import Settings

SECRET = "s" * 32


class Clock:
    """A clock the test moves: the cache's notion of now (PyJWT keeps the real one)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _verifier(clock: Clock, size: int = 10_000, leeway: float = 0.0) -> TokenVerifier:
    settings = Settings(jwt_secret=SECRET, jwt_leeway=leeway)
    return TokenVerifier(settings, cache_size=size, clock=clock)


async def test_a_token_verified_once_is_not_verified_again() -> None:
    verifier = _verifier(Clock())
    token = mint_token(SECRET, rooms=["a"], ttl=600)
    first = await verifier.verify(token)
    assert await verifier.verify(token) is first  # the same Grant: from the cache
    assert first.can_read("a")
    assert not first.can_read("b")


async def test_an_entry_goes_at_the_tokens_expiry_plus_leeway() -> None:
    clock = Clock()
    verifier = _verifier(clock, leeway=5)
    token = mint_token(SECRET, rooms=["a"], ttl=60)
    first = await verifier.verify(token)
    clock.now = first.expires_at + 5  # still within the leeway PyJWT allows
    assert await verifier.verify(token) is first
    clock.now = first.expires_at + 5.5
    again = await verifier.verify(token)  # expired for the cache: checked again
    assert again is not first
    assert again == first


async def test_the_least_recently_used_token_goes_first() -> None:
    verifier = _verifier(Clock(), size=2)
    a, b, c = (mint_token(SECRET, rooms=[r], ttl=600) for r in "abc")
    grant_a = await verifier.verify(a)
    grant_b = await verifier.verify(b)
    assert await verifier.verify(a) is grant_a  # a used again: b is now the oldest
    await verifier.verify(c)
    assert await verifier.verify(a) is grant_a
    assert await verifier.verify(b) is not grant_b  # evicted, verified anew


async def test_a_refused_token_is_refused_every_time() -> None:
    verifier = _verifier(Clock())
    forged = mint_token("another-secret-of-32-bytes-length", rooms=["*"], ttl=600)
    for _ in range(2):
        with pytest.raises(AuthError) as refused:
            await verifier.verify(forged)
        assert refused.value.code == "invalid_token"
    expired = mint_token(SECRET, rooms=["*"], ttl=-60)
    for _ in range(2):
        with pytest.raises(AuthError) as refused:
            await verifier.verify(expired)
        assert refused.value.code == "token_expired"


def test_the_cache_never_shows_a_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    cache = GrantCache(2, 0.0)
    token = mint_token(SECRET, rooms=["*"], ttl=600)
    cache.put(token, Grant("sub", frozenset({"*"}), frozenset(), time.time() + 600))
    assert len(cache) == 1
    assert token not in repr(cache)
    assert token not in caplog.text


def test_a_cache_of_size_zero_keeps_nothing() -> None:
    cache = GrantCache(0, 0.0)
    cache.put("t", Grant(None, frozenset(), frozenset(), time.time() + 600))
    assert cache.get("t") is None
    assert len(cache) == 0


async def test_tokens_with_the_same_rooms_share_one_room_set() -> None:
    verifier = _verifier(Clock())
    one = await verifier.verify(mint_token(SECRET, rooms=["a", "b"], ttl=600, sub="one"))
    two = await verifier.verify(mint_token(SECRET, rooms=["b", "a"], ttl=600, sub="two"))
    assert one.rooms is two.rooms
    assert (one.subject, two.subject) == ("one", "two")
    assert two.can_read("a")
    assert not two.can_publish("a")
