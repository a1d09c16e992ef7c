"""bench.multiroom's helpers: the plan of both cases, the room sets, the exact-count check, the
multi-room warm-up check, the request, the pool's groups and the report; no Redis, no
processes."""

from __future__ import annotations

import argparse
import asyncio
import math

import orjson
import pytest

from bench.multiroom import (
    MULTI,
    ONE,
    Measured,
    Pair,
    Side,
    count_problem,
    coverage,
    markdown,
    parse_args,
    plan,
    random_groups,
    ratio,
    rooms_request,
    tagged_problem,
)
from bench.publishers import owed
from bench.reader import LF_CONNECTED, Pool, Recorder, Stream
from service import sse
from tests.support.bench_records import make_step


def test_random_groups_are_different_sorted_sets_of_the_size_asked() -> None:
    groups = random_groups(100, 1000, 10, seed=13)
    assert len(groups) == 1000
    assert len(set(groups)) == 1000
    assert all(len(set(g)) == 10 and list(g) == sorted(g) for g in groups)
    assert all(0 <= r < 100 for g in groups for r in g)
    assert random_groups(100, 1000, 10, seed=13) == groups  # the seed fixes the layout
    assert random_groups(100, 1000, 10, seed=14) != groups


def test_every_room_has_about_a_hundred_streams() -> None:
    counts = coverage(random_groups(100, 1000, 10, seed=13), 100)
    assert sum(counts) == 10_000
    assert min(counts) > 60
    assert max(counts) < 140


def test_random_groups_refuses_what_cannot_be_drawn() -> None:
    with pytest.raises(ValueError, match="cannot draw"):
        random_groups(5, 11, 2, seed=1)  # only 10 pairs of 5 rooms
    with pytest.raises(ValueError, match="cannot draw"):
        random_groups(5, 1, 6, seed=1)


def test_the_full_plan_matches_deliveries_on_both_sides() -> None:
    a, b = plan(parse_args([]))
    assert (a.multi.streams, a.multi.rooms_per_stream, a.one.streams) == (1, 64, 64)
    assert a.multi.deliveries_per_s == a.one.deliveries_per_s == 3000
    assert (b.multi.streams, b.multi.rooms_per_stream) == (1000, 10)
    assert b.multi.deliveries_per_log == 100
    # 100 one-room streams per room at the same logs/s: the same deliveries per log.
    assert (b.one.streams, b.one.rate_logs) == (10_000, b.multi.rate_logs)
    assert b.one.deliveries_per_s == b.multi.deliveries_per_s == 20_000
    assert "same deliveries per log" in b.note
    counts = coverage(b.multi.groups or (), 100)
    assert f"{min(counts)} to {max(counts)} streams on a room" in b.note


def test_quick_scales_the_one_room_rate_and_says_why() -> None:
    args = parse_args(["--quick"])
    assert (args.seconds, args.rounds, args.b_per_room) == (3.0, 2, 10)
    (_, b) = plan(args)
    assert (b.one.streams, b.one.rate_logs) == (1000, 10 * b.multi.rate_logs)
    assert b.one.deliveries_per_s == b.multi.deliveries_per_s
    assert "10x the logs/s" in b.note
    assert "flattered" in b.note


def test_cases_can_be_chosen() -> None:
    (only,) = plan(parse_args(["--cases", "b"]))
    assert only.name == "B"
    with pytest.raises(SystemExit):
        parse_args(["--cases", "C"])


def test_count_problem_wants_exactly_what_each_stream_is_owed() -> None:
    assert count_problem([(5, 5), (10, 10)], []) is None
    assert "1 of 2 streams missed logs (one got 4 of 5)" in (
        count_problem([(4, 5), (10, 10)], []) or ""
    )
    assert "more logs than sent" in (count_problem([(6, 5)], []) or "")
    assert count_problem([(5, 5)], ["closed by the server", None]) == (
        "2 streams were closed (closed by the server)"
    )


def _log_event(room: str, seq: int, cursor: str | None = "r1.abc") -> bytes:
    data = orjson.dumps({"roomId": room, "metadata": {"seq": seq, "sentAt": 1.0}})
    head = b"id: %b\n" % cursor.encode() if cursor else b""
    return head + b"event: log\ndata: " + data + b"\n\n"


def test_tagged_problem_checks_room_first_cursor_and_counts() -> None:
    good = b"".join(_log_event(r, i) for i in range(2) for r in ("w0", "w1"))
    assert tagged_problem(sse.parse(good), ["w0", "w1"], 2) is None
    assert "logs per room" in (tagged_problem(sse.parse(good), ["w0", "w1"], 3) or "")
    plain = b"event: log\ndata: " + orjson.dumps({"metadata": {}, "roomId": "w0"}) + b"\n\n"
    assert "room first" in (tagged_problem(sse.parse(plain), ["w0"], 1) or "")
    one_room_id = _log_event("w0", 0, cursor="1700000000000-0")
    assert "not a cursor" in (tagged_problem(sse.parse(one_room_id), ["w0"], 1) or "")


def test_rooms_request_asks_for_the_multi_room_stream() -> None:
    raw = rooms_request(8080, "a,b,c", "tok")
    line, _, rest = raw.partition(b"\r\n")
    assert line == b"GET /api/v1/logs?rooms=a,b,c HTTP/1.1"
    assert b"Authorization: Bearer tok\r\n" in rest
    assert raw.endswith(b"\r\n\r\n")


async def test_a_pool_of_groups_owes_each_stream_the_logs_of_its_rooms() -> None:
    asked: list[str] = []

    def request(rooms: str) -> bytes:
        asked.append(rooms)
        return rooms.encode()

    pool = Pool(1, ["a", "b", "c"], request, LF_CONNECTED, Recorder(), groups=[(0, 1), (1, 2)])
    assert asked == ["a,b", "b,c"]
    streams = [Stream(pool.recorder, LF_CONNECTED, g, sampled=False) for g in (0, 1, 1)]
    pool.streams = list(streams)
    assert pool.per_room == 6 / 3  # three streams of two rooms over three rooms
    per_room = owed(7, 3)  # 3, 2, 2
    assert pool.owed_to_groups(per_room) == [5, 4]
    streams[0].received, streams[1].received, streams[2].received = 5, 4, 3
    assert pool.behind(per_room) == [streams[2]]
    streams[2].received = 4
    assert await pool.wait_all(per_room, 0.0) == []
    await asyncio.sleep(0)


async def test_a_pool_without_groups_is_one_stream_kind_per_room_as_before() -> None:
    pool = Pool(1, ["a", "b"], str.encode, LF_CONNECTED, Recorder())
    assert pool.requests == [b"a", b"b"]
    pool.streams = [Stream(pool.recorder, LF_CONNECTED, r, sampled=False) for r in (0, 1, 1)]
    assert pool.per_room == 1.5
    assert pool.owed_to_groups([3, 2]) == [3, 2]


def _measured(kind: str, us: list[float], delivered: int = 1000, **extra: object) -> Measured:
    side = Side("A", kind, 64, 3000.0, groups=((0, 1),) if kind == MULTI else None)
    m = Measured.of(side)
    m.steps = [make_step(server_cpu_us_per_delivery=u, delivered=delivered) for u in us]
    for k, v in extra.items():
        setattr(m, k, v)
    return m


def test_cpu_per_delivery_adds_up_the_phases_and_the_ratio_divides() -> None:
    multi = _measured(MULTI, [12.0, 14.0])
    one = _measured(ONE, [10.0, 10.0])
    assert multi.us_per_delivery == 13.0
    assert ratio(multi, one) == pytest.approx(1.3)
    failed = _measured(MULTI, [12.0], error="setup")
    assert math.isnan(ratio(failed, one))
    assert math.isnan(_measured(ONE, []).us_per_delivery)


def test_the_report_has_both_sides_the_ratio_and_the_verdict() -> None:
    args = argparse.Namespace(seconds=6.0, rounds=2)
    side = Side("A", MULTI, 64, 3000.0, groups=(tuple(range(64)),))
    pair = Pair("A", "1 stream on 64 rooms vs 64 one-room streams", side, side, "a note")
    text = markdown([pair], [(_measured(MULTI, [20.0, 22.0]), _measured(ONE, [10.0, 10.0]))], args)
    assert "| A | multi-room |" in text
    assert "| A | one-room |" in text
    assert "**21.0** (20.0/22.0)" in text
    assert "| 2.10x | **not met** |" in text
    assert "- a note" in text
    met = markdown([pair], [(_measured(MULTI, [11.0]), _measured(ONE, [10.0]))], args)
    assert "| 1.10x | met |" in met
    failed = _measured(MULTI, [11.0], error="not every stream got every log")
    text = markdown([pair], [(failed, _measured(ONE, [10.0]))], args)
    assert "| n/a | n/a |" in text
    assert "error: not every stream got every log" in text
