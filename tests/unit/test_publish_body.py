"""A POST's body: the whole-batch checks accept exactly what the log-by-log checks accept,
and every refusal is the log-by-log one (the first bad log, by its index)."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.errors import ApiError
from service.handlers.publish import _one_by_one, encoded_logs
from service.logs import MAX_NESTING, any_may_nest_too_deep
from tests.support.factories import sample_log

LIMIT = 1024
NOW = "2026-01-01T00:00:00.000Z"


def deep(depth: int) -> dict[str, Any]:
    inner: dict[str, Any] = {}
    for _ in range(depth - 2):
        inner = {"k": inner}
    return sample_log(0, metadata=inner)


KINDS: dict[str, Any] = {
    "good": sample_log(1),
    "no-timestamp": {k: v for k, v in sample_log(2).items() if k != "timestamp"},
    "null-metadata": sample_log(3, metadata=None),
    "bad-level": sample_log(4, level="INFO"),
    "not-an-object": 42,
    "id-given": sample_log(5, id="1-0", metadata=None),
    "deep-64": deep(MAX_NESTING),
    "deep-65": deep(MAX_NESTING + 1),
    "deep-300": deep(300),
    "shallow-many-brackets": sample_log(6, metadata={f"k{i}": [{}] for i in range(40)}),
    "brackets-in-strings": sample_log(7, message="{[" * 100),
    "large": sample_log(8, message="x" * LIMIT),
    "just-fits": sample_log(
        9, message="x" * (LIMIT - len(orjson.dumps(sample_log(9, message=""))))
    ),
}


def outcome(run: Any) -> tuple[str, Any]:
    try:
        return "accepted", run()
    except ApiError as exc:
        return "refused", (exc.status, exc.code, exc.detail)


def body_of(kinds: list[str], array: bool) -> bytes:
    """By the stdlib's encoder: orjson's stops at 254 levels."""
    logs = [KINDS[k] for k in kinds]
    return json.dumps(logs if array else logs[0], separators=(",", ":")).encode()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(sorted(KINDS)), min_size=1, max_size=100), st.booleans())
def test_the_batch_checks_agree_with_the_log_by_log_checks(kinds: list[str], array: bool) -> None:
    raw = body_of(kinds, array)
    parsed = orjson.loads(raw)
    by_one = outcome(lambda: _one_by_one(parsed if array else [parsed], array, LIMIT, NOW))
    with mock.patch("service.handlers.publish.utc_now_iso", return_value=NOW):
        assert outcome(lambda: encoded_logs(raw, LIMIT)) == by_one


@pytest.mark.parametrize(
    ("kinds", "detail"),
    [
        (["good", "deep-65", "bad-level"], "[1].nests objects and arrays more than 64 deep"),
        (["good", "bad-level", "deep-65"], "[1].level must be one of"),
        (["large", "deep-300"], "[0] is over 1024 bytes"),
        (["deep-300", "large"], "[0].nests objects and arrays more than 64 deep"),
        (["good"] * 99 + ["not-an-object"], "[99].log a log must be a JSON object"),
    ],
)
def test_the_first_bad_log_is_the_one_refused(kinds: list[str], detail: str) -> None:
    with pytest.raises(ApiError) as refused:
        encoded_logs(body_of(kinds, True), LIMIT)
    assert refused.value.detail.startswith(detail)


def test_a_batch_of_good_logs_is_encoded_as_orjson_encodes_each() -> None:
    logs = [sample_log(i) for i in range(100)]
    assert encoded_logs(orjson.dumps(logs), LIMIT) == [orjson.dumps(log) for log in logs]


@pytest.mark.parametrize(
    ("encoded", "doubt"),
    [
        ([b"{}"] * 100, False),  # 100 openings in all, none past the limit in one
        ([b"[" * MAX_NESTING], False),
        ([b"{}", b"[" * (MAX_NESTING + 1)], True),
        ([b'{"a":"' + b"{" * (MAX_NESTING + 1) + b'"}'], True),  # only a doubt: walked then
    ],
)
def test_only_an_encoding_with_more_openings_than_the_limit_is_a_doubt(
    encoded: list[bytes], doubt: bool
) -> None:
    assert any_may_nest_too_deep(encoded) is doubt
