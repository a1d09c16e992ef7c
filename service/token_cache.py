"""The verified-token cache: two generations of plain dicts, by the token's digest.

A stream holds its place in this cache for as long as its token is kept, so its entry is
memory per idle stream (`bench.storm`): an OrderedDict entry with a `(grant, until)` tuple was
~0.2 KiB of it. Here an entry is one dict slot; the time bound is the generation's (each
remembers the period its first entry was put in, and goes at the end of the next one, so none
is trusted CACHE_SECONDS after it was checked) and the token's own expiry is the grant's.

A generation goes when its own time is up, not when a period ends: the older half of a full
cache, filled in the same period as the younger, is still good in the next one. Dropping it
at the turn of a period made a reconnect storm a minute after its streams opened check half
of their tokens again (`bench.storm`: a fifth of the server's CPU, in PyJWT).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from .auth import Grant


class TokenCache:
    """At most `size` grants, none served `seconds` after it was put (nor past its expiry
    plus `leeway`). Full, the older generation goes, never everything at once: a storm of
    reconnects as large as the cache still finds the newest half."""

    __slots__ = (
        "_epoch",
        "_half",
        "_leeway",
        "_old",
        "_old_start",
        "_period",
        "_young",
        "_young_start",
    )

    def __init__(self, *, size: int, seconds: float, leeway: float) -> None:
        self._half: Final = max(size // 2, 1)
        self._period: Final = seconds / 2
        self._leeway: Final = leeway
        self._young: dict[bytes, Grant] = {}
        self._old: dict[bytes, Grant] = {}
        # The period in which each generation's first (oldest) entry was put.
        self._young_start = 0
        self._old_start = 0
        self._epoch = 0  # the period of the last call

    def get(self, key: bytes, now: float) -> Grant | None:
        self._age(now)
        grant = self._young.get(key)
        if grant is None:
            grant = self._old.get(key)
        if grant is None:
            return None
        if now < grant.expires_at + self._leeway:
            return grant
        self._young.pop(key, None)
        self._old.pop(key, None)
        return None

    def put(self, key: bytes, grant: Grant, now: float) -> None:
        self._age(now)
        if len(self._young) >= self._half:
            self._old, self._old_start, self._young = self._young, self._young_start, {}
        if not self._young:
            self._young_start = self._epoch
        self._young[key] = grant

    def _age(self, now: float) -> None:
        epoch = int(now // self._period)
        if epoch == self._epoch:
            return
        self._epoch = epoch
        # A generation started in period p holds entries put at p * period or later: gone
        # from the start of period p + 2, none is served `seconds` after it was put.
        if self._old and self._old_start <= epoch - 2:
            self._old = {}
        if self._young and self._young_start <= epoch - 2:
            self._young = {}
        if self._young and not self._old and self._young_start < epoch:
            # This period's entries start a generation of their own: kept until its end.
            self._old, self._old_start, self._young = self._young, self._young_start, {}

    def digests(self) -> list[bytes]:
        """Oldest first (for tests and debugging)."""
        return [*self._old, *self._young]

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def __contains__(self, key: object) -> bool:
        return key in self._young or key in self._old
