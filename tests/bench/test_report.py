"""The Markdown tables, rendered from a small set of records, and the JSON round trip that the
journal relies on."""

from __future__ import annotations

import math
from dataclasses import asdict, replace

import orjson

from bench.records import Latency
from bench.report import compare_markdown, fanout_markdown, summary_table
from bench.results import json_safe, load_runs
from bench.targets import targets, targets_table
from tests.support.bench_records import CASES, make_step, run, sample_runs


def test_fanout_table() -> None:
    runs = [
        run("roomlogs", "1x1000", 4_000_000, connect_s=0.4, limit="load generator"),
        replace(run("roomlogs", "1x1000", None), streams=5000, notes=["nothing sustained"]),
    ]
    runs[0].redis_floor = Latency(samples=10, p50_ms=0.3, p90_ms=0.5, p99_ms=0.9, max_ms=1.0)
    assert fanout_markdown(runs).splitlines() == [
        "| streams | connect s | RSS KiB / idle stream | max sustained deliveries/s | at logs/s "
        "| logs / read | server µs / delivery at max | server core at max "
        "| ≈ deliveries/s at 100 % server core | client core at max | latency phase logs/s "
        "| server µs / delivery, latency phase | p50 ms | p99 ms | Redis-only p50 / p99 ms "
        "| limited by |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        "| 1,000 | 0.4 | 2.0 | 4,000,000 | 100.0 | 10.0 | 2.50 | 40% | 10,000,000 "
        "| 50% + redis 5% | 20.0 | 7.00 | 2.0 | 8.0 | 0.30 / 0.90 | load generator |",
        "| 5,000 | n/a | 2.0 | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a "
        "| n/a | server CPU |",
        "",
        "Notes:",
        "- 5,000 streams: nothing sustained",
    ]


def test_summary_table() -> None:
    assert summary_table(sample_runs(), CASES, "1x1000").splitlines() == [
        "| system | 1 room x 1,000: deliveries/s | 10 rooms x 2: deliveries/s "
        "| µs CPU / delivery at max (1x1000) | µs CPU / delivery, one log at a time (1x1000) "
        "| p50 / p99 ms (1x1000) | KiB / idle stream (500) | Redis subscriptions (1x1000) |",
        "|---|---|---|---|---|---|---|---|",
        "| roomlogs | 4,000,000 | 80,000 | 2.50 | 7.00 | 2.0 / 8.0 | 1.8 | 1 |",
        "| minimal uvloop server | 5,000,000 | 120,000 | 2.50 | 7.00 | 2.0 / 8.0 | 1.4 | 1 |",
        "| nchan | 200,000 | 60,000 | 2.50 | 7.00 | 2.0 / 8.0 | 10.0 | none (HTTP publish) |",
    ]


def test_targets() -> None:
    rows = targets(sample_runs(), "1x1000", "10x2")
    assert [(t.what, t.met) for t in rows] == [
        ("1x1000 deliveries/s vs minimal", True),
        ("1x1000 deliveries/s vs nchan", True),
        ("1x1000 p99 latency vs minimal", True),
        ("10x2 deliveries/s vs minimal", False),
        ("KiB per idle stream (500 streams)", True),
        ("Redis subscriptions per worker (any case)", True),
    ]
    table = targets_table(rows).splitlines()
    assert table[2] == (
        "| 1x1000 deliveries/s vs minimal | 4,000,000.0 | minimal 5,000,000.0 | 0.80x "
        "| ≥ 0.5x | yes |"
    )
    assert table[5] == (
        "| 10x2 deliveries/s vs minimal | 80,000.0 | minimal 120,000.0 | 0.67x | ≥ 0.8x | **no** |"
    )
    assert table[6] == "| KiB per idle stream (500 streams) | 1.8 | nchan 10.0 |  | ≤ 8 KiB | yes |"


def test_compare_markdown_sections_and_notes() -> None:
    text = compare_markdown(
        sample_runs(), CASES, key_case="1x1000", rooms_case="10x2", stream_query=""
    )
    assert [line for line in text.splitlines() if line.startswith("###")] == [
        "### Summary",
        "### Targets",
        "### Every case",
    ]
    assert text.endswith("- 10x2 minimal uvloop server: other processes used up to 20% of a core")
    filtered = compare_markdown(
        sample_runs(), CASES, key_case="1x1000", rooms_case="10x2", stream_query="level=info"
    )
    assert "Not computed: roomlogs' streams were opened with `?level=info`" in filtered


def test_a_result_reads_back_as_the_same_records() -> None:
    runs = sample_runs()
    runs[0].first_failure = make_step(lag_s=math.inf, complete=False, sustained=False)
    doc = orjson.loads(orjson.dumps(json_safe({"runs": [asdict(r) for r in runs]})))
    back = load_runs(doc)
    assert [r.case for r in back] == [r.case for r in runs]
    assert back[0].max_sustained == runs[0].max_sustained
    assert back[0].first_failure is not None
    assert math.isnan(back[0].first_failure.lag_s)
    assert math.isnan(back[6].connect_s)
    assert summary_table(back, CASES, "1x1000") == summary_table(runs, CASES, "1x1000")


def test_an_older_fanout_result_reads_as_runs() -> None:
    tier = {"streams": 100, "steps": [], "limit": "not reached", "server_counters": {"x": 1.0}}
    (r,) = load_runs({"tiers": [tier]})
    assert (r.system, r.case, r.per_room, r.counters) == ("roomlogs", "1x100", 100, {"x": 1.0})
