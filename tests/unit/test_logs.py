"""The checks a published log goes through, on their own: the cheap pre-checks must never
let through what the exact check refuses."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from service.logs import (
    MAX_NESTING,
    encode_log,
    inexact_integer,
    nests_too_deep,
    normalize,
    utc_now_iso,
)
from tests.support.factories import sample_log


def nested(depth: int) -> dict[str, Any]:
    """A log whose metadata nests objects `depth` deep (the log itself is the first level)."""
    inner: dict[str, Any] = {}
    for _ in range(depth - 2):
        inner = {"k": inner}
    return {**sample_log(0), "metadata": inner}


def nested_arrays(depth: int) -> dict[str, Any]:
    inner: list[Any] = []
    for _ in range(depth - 2):
        inner = [inner]
    return {**sample_log(0), "deep": inner}


@pytest.mark.parametrize("make", [nested, nested_arrays], ids=["objects", "arrays"])
@pytest.mark.parametrize("depth", [2, 3, MAX_NESTING - 1, MAX_NESTING])
def test_a_log_up_to_the_nesting_limit_is_encoded_as_orjson_encodes_it(
    make: Any, depth: int
) -> None:
    log = make(depth)
    assert not nests_too_deep(log)
    assert encode_log(log) == orjson.dumps(log)


@pytest.mark.parametrize("make", [nested, nested_arrays], ids=["objects", "arrays"])
@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 254, 255, 300])
def test_a_log_past_the_nesting_limit_is_none_even_where_orjson_cannot_encode_it(
    make: Any, depth: int
) -> None:
    assert nests_too_deep(make(depth))
    assert encode_log(make(depth)) is None


def test_brackets_inside_strings_are_not_nesting() -> None:
    log = sample_log(0, message="[{" * 200, metadata={"k": "}]" * 200})
    assert encode_log(log) == orjson.dumps(log)


def test_many_shallow_containers_are_not_nesting() -> None:
    """More brackets than the limit, none inside another: walked, and let through."""
    log = sample_log(0, metadata={f"k{i}": [{}] for i in range(MAX_NESTING)})
    assert encode_log(log) == orjson.dumps(log)


@pytest.mark.parametrize(
    "text",
    [
        b'{"n":18446744073709551616}',  # 2**64
        b'{"n":-9223372036854775809}',  # -(2**63) - 1
        b'[{"a":1},{"b":{"n":1234567890123456789012345}}]',
        b'{"s":"1234567890123456789012","n":99999999999999999999}',
    ],
)
def test_an_integer_beyond_64_bits_is_found(text: bytes) -> None:
    found = inexact_integer(text)
    assert found is not None
    assert not -(1 << 63) <= int(found) < (1 << 64)


@pytest.mark.parametrize(
    "text",
    [
        b'{"n":18446744073709551615,"m":-9223372036854775808}',  # the 64-bit edges
        b'{"s":"12345678901234567890123456789"}',  # digits in a string
        b'{"f":1.2345678901234567890123,"e":1234567890123456789012e-3}',  # not integers
        b'{"n":123456789012345678}',  # 18 digits
        b'{"t":"2026-01-01T00:00:00.000Z","u":1796315811.1234567}',
    ],
)
def test_nothing_is_found_where_every_integer_is_exact(text: bytes) -> None:
    assert inexact_integer(text) is None


def test_normalize_refuses_an_unhashable_level_as_a_bad_level() -> None:
    with pytest.raises(ValueError, match="level"):
        normalize(sample_log(0, level=["info"]))


def test_normalize_fills_in_what_is_missing_and_keeps_extra_fields() -> None:
    log = {"agentType": "a", "level": "warn", "message": "m", "extra": [1]}
    out = normalize(log, "2026-01-01T00:00:00.000Z")
    assert out == {**log, "metadata": {}, "timestamp": "2026-01-01T00:00:00.000Z"}
    assert normalize({**log, "metadata": None})["metadata"] == {}


def test_utc_now_iso_is_now_to_the_millisecond_in_utc() -> None:
    before = datetime.now(UTC)
    text = utc_now_iso()
    after = datetime.now(UTC)
    assert len(text) == 24
    assert text.endswith("Z")
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= stamp <= after


def test_utc_now_iso_moves_on_with_the_clock() -> None:
    """Formatted once per millisecond: the next millisecond is a new text."""
    first = utc_now_iso()
    start = time.time_ns() // 1_000_000
    while time.time_ns() // 1_000_000 == start:  # the clock, not a sleep: within 1 ms
        pass
    assert utc_now_iso() > first
