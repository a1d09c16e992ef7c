"""ids: stream ids `<ms>-<seq>`, parsed and ordered the way Redis does."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.ids import format_id, parse_id


@given(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)))
def test_format_and_parse_id_round_trip(key: tuple[int, int]) -> None:
    text = format_id(key)
    assert re.fullmatch(r"[0-9]+-[0-9]+", text)
    assert parse_id(text) == key
    assert format_id(parse_id(text) or (-1, -1)) == text


@given(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)), st.data())
def test_parse_id_orders_like_redis(key: tuple[int, int], data: st.DataObject) -> None:
    other = data.draw(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)))
    a, b = parse_id(format_id(key)), parse_id(format_id(other))
    assert a is not None
    assert b is not None
    assert (a < b) == (key < other)


@pytest.mark.parametrize(
    "text", ["", "1", "1-", "-1", "a-b", "1-2-3", " 1-2", "1-2 ", "1-2\n", "1_2", "+1-2", "1-*"]
)
def test_parse_id_rejects_what_is_not_a_stream_id(text: str) -> None:
    assert parse_id(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "\u0661\u0667\u0660\u0660-\u0660",  # Arabic-Indic digits: int() reads them, Redis does not
        "\uff11-\uff12",  # fullwidth digits
        "18446744073709551616-0",  # 2**64: past Redis' 64-bit ms
        "0-99999999999999999999",
    ],
)
def test_parse_id_rejects_ids_redis_would_refuse(text: str) -> None:
    assert parse_id(text) is None


@given(st.one_of(st.text(max_size=50), st.from_regex(r"[0-9]{1,22}-[0-9]{1,22}", fullmatch=True)))
def test_parse_id_agrees_with_the_shape_redis_accepts(text: str) -> None:
    """`<ms>-<seq>`, ASCII digits, each part a 64-bit unsigned number (Redis' own rule)."""
    m = re.fullmatch(r"([0-9]{1,20})-([0-9]{1,20})", text)
    key = (int(m[1]), int(m[2])) if m else None
    expected = key if key is not None and max(key) < 2**64 else None
    assert parse_id(text) == expected
