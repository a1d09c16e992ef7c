"""bench.plain's pure parts: the exactly-once check of a stream and the verdict on a phase, the
Markdown from a fixed sample, the JSON round trip, the journal's page of a plain run, and the
flags. No processes, no Redis."""

from __future__ import annotations

import math
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.journal import Entry, dumps, entry_of, section
from bench.plain import parse_args
from bench.records import Latency
from bench.report_plain import Phase, phases_of, plain_markdown, problems, stream_problem
from bench.results import json_safe


def ids(count: int, first: int = 0) -> list[tuple[str | None, int]]:
    return [(f"1700000000000-{seq}", seq) for seq in range(first, first + count)]


def phase(feed: str, gateways: int, **fields: Any) -> Phase:
    plain = feed == "plain"
    values: dict[str, Any] = {
        "sent": 5000,
        "publish_rate": 499.9,
        "sustained": True,
        "latency": Latency(5000, 1.0 + plain, 2.0 + plain, 4.0 + 2 * plain, 9.0),
        "redis_floor": None if plain else Latency(5000, 0.3, 0.5, 0.9, 2.0),
        "redis_us_per_log": 20.0 + 15.0 * gateways * plain,
        "gateways_us_per_log": 60.0 * gateways + 80.0 * gateways * plain,
        "each_gateway_us_per_log": [60.0 + 80.0 * plain] * gateways,
        "gateways_core": 0.1,
        "redis_core": 0.02,
        "loadgen_core": 0.1,
        "other_load": 0.01,
        "idle_gateways_core": 0.002 * gateways,
        "idle_redis_core": 0.003,
        "history": 5000,
        "claim_keys": 5000 if plain else 0,
        "keys": 5004 if plain else 4,
        "used_memory_delta": (2_000_000 if plain else 1_500_000),
        "exact_streams": 10,
        "commands_per_log": (
            {"evalsha": gateways, "publish": 2.0, "script|exists": gateways, "ping": 0.001}
            if plain
            else {"evalsha": 1.0, "publish": 1.0, "xadd": 1.0}
        ),
        "command_us": {"evalsha": 30.0, "publish": 5.0, "script|exists": 2.0, "xadd": 9.0},
    }
    values.update(fields)
    return Phase(feed, gateways, 10, 500.0, **values)


NOT_ABOVE = "is not above the one before"
SAMPLE = [phase("script", 1), phase("plain", 1), phase("script", 3), phase("plain", 3)]


# -- one stream --------------------------------------------------------------------------------


def test_a_stream_with_every_log_once_in_order_with_growing_ids() -> None:
    assert stream_problem(ids(5), 0, 5) is None
    assert stream_problem(ids(3, first=7), 7, 3) is None
    assert stream_problem([], 0, 0) is None


@pytest.mark.parametrize(
    ("logs", "problem"),
    [
        (ids(4), "4 logs of 5: 1 missing, 0 repeated, 0 not sent"),
        ([*ids(5), ("1700000000001-0", 4)], "6 logs of 5: 0 missing, 1 repeated, 0 not sent"),
        ([*ids(4), ("1700000000001-0", 9)], "5 logs of 5: 1 missing, 0 repeated, 1 not sent"),
        ([ids(5)[i] for i in (0, 2, 1, 3, 4)], "logs out of order"),
        ([*ids(4), (None, 4)], "log 4 without a stream id (None)"),
        ([*ids(4), ("not-an-id", 4)], "log 4 without a stream id ('not-an-id')"),
        ([*ids(4), ("1700000000000-3", 4)], f"log 4: id 1700000000000-3 {NOT_ABOVE}"),
        ([*ids(4), ("1600000000000-9", 4)], f"log 4: id 1600000000000-9 {NOT_ABOVE}"),
    ],
)  # fmt: skip
def test_a_stream_that_missed_repeated_reordered_or_lost_an_id(
    logs: list[tuple[str | None, int]], problem: str
) -> None:
    assert stream_problem(logs, 0, 5) == problem


# -- a phase -----------------------------------------------------------------------------------


def test_the_verdict_on_good_phases_is_empty() -> None:
    assert [x for p in SAMPLE for x in problems(p)] == []


def test_the_verdict_on_bad_phases() -> None:
    twice = phase("plain", 3, history=5012)  # stored twice by two gateways, 12 times
    behind = phase("plain", 1, exact_streams=8, problem="4990 logs of 5000: 10 missing")
    assert problems(twice) == ["plain, 3 gateway(s): XLEN room:R:history is 5012, 5000 logs sent"]
    assert problems(behind) == [
        "plain, 1 gateway(s): 2 of 10 streams did not get every log once, in order, with an id "
        "(4990 logs of 5000: 10 missing)"
    ]
    assert problems(phase("script", 1, sent=0, history=0)) == [
        "script, 1 gateway(s): no log was sent"
    ]
    failed = phase("plain", 3, error="redis did not answer within 30 s")
    assert problems(failed) == ["plain, 3 gateway(s): redis did not answer within 30 s"]


# -- the Markdown ------------------------------------------------------------------------------


def test_the_table_from_a_fixed_sample() -> None:
    text = plain_markdown(SAMPLE, "every gateway on core 0, the rest on core 1")
    lines = text.splitlines()
    assert lines[:8] == [
        "### Plain PUBLISH against the publish script",
        "",
        "| publish | gateways | logs/s | p50 ms | p90 ms | p99 ms | Redis µs CPU / log "
        "| gateways µs CPU / log | history entries / sent | streams: each log once, in order "
        "| claim keys | Redis memory Δ KiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        "| publish script | 1 | 500 | 1.00 | 2.00 | 4.00 | 20.0 | 60.0 | 5,000 / 5,000 "
        "| 10 / 10 | 0 | 1,465 |",
        "| plain PUBLISH | 1 | 500 | 2.00 | 3.00 | 6.00 | 35.0 | 140.0 | 5,000 / 5,000 "
        "| 10 / 10 | 5,000 | 1,953 |",
        "| publish script | 3 | 500 | 1.00 | 2.00 | 4.00 | 20.0 | 180.0 | 5,000 / 5,000 "
        "| 10 / 10 | 0 | 1,465 |",
        "| plain PUBLISH | 3 | 500 | 2.00 | 3.00 | 6.00 | 65.0 | 420.0 | 5,000 / 5,000 "
        "| 10 / 10 | 5,000 | 1,953 |",
    ]
    at = lines.index("#### plain PUBLISH minus publish script")
    assert lines[at + 2 : at + 6] == [
        "| gateways | Δ p50 ms | Δ p90 ms | Δ p99 ms | Δ Redis µs / log | Δ gateways µs / log "
        "| Redis bytes / claim key |",
        "|---|---|---|---|---|---|---|",
        "| 1 | +1.00 | +1.00 | +2.00 | +15.0 | +80.0 | 100 |",
        "| 3 | +1.00 | +1.00 | +2.00 | +45.0 | +240.0 | 100 |",
    ]
    notes = lines[lines.index("Notes:") + 1 :]
    assert notes[0] == (
        "- pinning: every gateway on core 0, the rest on core 1; one room, the streams on the "
        "first gateway"
    )
    assert notes[1] == (
        "- 1 gateway(s): idle, all gateways 0.2% of a core (≈ 4.0 µs per log at 500 logs/s, "
        "counted in the CPU per log), Redis 0.3%; a plain Redis subscriber's p50 / p99 "
        "0.30 / 0.90 ms"
    )
    assert (
        "- plain, 3: Redis calls per log (µs each): evalsha 3.00 (30.0 µs), script|exists 3.00 "
        "(2.0 µs), publish 2.00 (5.0 µs)"
    ) in lines
    assert "- plain, 3: µs CPU / log of each gateway: 140 / 140 / 140" in lines
    assert not any(n.startswith("- plain, 1: µs CPU / log of each") for n in lines)
    assert notes[-1] == (
        "- checks: every stream got every log once, in order, with an id; history = sent"
    )


def test_the_table_says_what_failed_and_what_was_noisy() -> None:
    bad = [
        SAMPLE[0],
        replace(SAMPLE[1], history=4999, other_load=0.4, sustained=False),
        replace(SAMPLE[2], error="gateway exited", latency=None, sent=0, history=-1),
    ]
    text = plain_markdown(bad, "unpinned")
    assert "| publish script | 3 | 500 | n/a | n/a | n/a |" in text
    assert "- plain, 1: other processes used 40%" in text
    assert "- plain, 1: the rate step was not sustained" in text
    assert (
        "- CHECK FAILED: plain, 1 gateway(s): XLEN room:R:history is 4999, 5000 logs sent" in text
    )
    assert "- CHECK FAILED: script, 3 gateway(s): gateway exited" in text
    assert "- checks:" not in text
    # Without both phases of a gateway count, there is no difference to show.
    assert "| 3 |" not in text.split("#### plain PUBLISH minus publish script")[1]


# -- JSON, journal -----------------------------------------------------------------------------


def result_doc(phases: list[Phase]) -> dict[str, Any]:
    raw = {
        "benchmark": "plain",
        "started": "20261210T120000Z",
        "command": "python -m bench.plain",
        "config": {"rate": 500.0, "seconds": 10.0, "streams": 10, "gateways": [1, 3]},
        "environment": {"git_commit": "7cba33a" + "0" * 33, "cpus": 2},
        "pinning": "every gateway on core 0",
        "problems": [],
        "phases": [asdict(p) for p in phases],
        "runs": [],
    }
    doc: dict[str, Any] = orjson.loads(orjson.dumps(json_safe(raw)))
    return doc


def test_phases_read_back_from_the_json() -> None:
    nan = replace(SAMPLE[1], redis_us_per_log=math.nan, redis_floor=None)
    back = phases_of(result_doc([SAMPLE[0], nan]))
    assert back[0] == SAMPLE[0]
    assert math.isnan(back[1].redis_us_per_log)
    assert replace(back[1], redis_us_per_log=0.0) == replace(nan, redis_us_per_log=0.0)


def test_the_journal_keeps_and_renders_a_plain_run(tmp_path: Path) -> None:
    doc = result_doc(SAMPLE)
    entry = entry_of(doc, title="plain PUBLISH cost", note="", source="bench/results/p.json")
    assert entry["config"] == {"rate": 500.0, "seconds": 10.0, "streams": 10, "gateways": [1, 3]}
    assert entry["phases"] == doc["phases"]
    path = tmp_path / "entry.json"
    path.write_bytes(dumps(entry))
    again = orjson.loads(path.read_bytes())
    page = "\n".join(section(Entry(again, [])))
    assert "#### Plain PUBLISH against the publish script" in page
    assert "| plain PUBLISH | 3 | 500 | 2.00 | 3.00 | 6.00 | 65.0 | 420.0 |" in page


# -- flags -------------------------------------------------------------------------------------


def test_the_flags() -> None:
    args = parse_args([])
    assert (args.rate, args.seconds, args.streams, args.gateways) == (500.0, 10.0, 10, [1, 3])
    assert (args.server_cpu, args.client_cpu) == (0, 1)
    args = parse_args(["--gateways", "1,2,3", "--no-pin", "--rate", "100"])
    assert (args.gateways, args.server_cpu, args.client_cpu) == ([1, 2, 3], None, None)
    for bad in (["--rate", "0"], ["--gateways", "0"], ["--rate", "100000", "--seconds", "10"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
