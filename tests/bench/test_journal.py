"""The journal: an entry keeps what the tables are made of, and renders them as the run did."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from bench import multiroom, report_publish, report_scaleout, report_storm
from bench.journal import MULTIROOM_STEP_KEEPS, add, cases_of, dumps, entry_of, load_entries, render
from bench.records import Case, Run
from bench.report import compare_markdown
from bench.results import json_safe
from tests.support.bench_records import CASES, make_step, sample_runs

# Real results of `--quick` runs on a busy machine, trimmed to a few records each.
FIXTURES = Path(__file__).parent / "fixtures"


def result_doc(runs: list[Run]) -> dict[str, Any]:
    for r in runs:
        if r.max_sustained is not None:
            r.steps = [
                make_step(achieved=r.best / 2),
                r.max_sustained,
                make_step(achieved=r.best * 1.1, sustained=False),  # the peak: late, not lost
                make_step(achieved=1.0, dead_streams=2, sustained=False),  # lost
            ]
            r.first_failure = r.steps[2]
    doc = {
        "benchmark": "compare",
        "started": "20261202T120000Z",
        "command": "python -m bench.compare --quick",
        "config": {"key_streams": 1000, "rooms": [10, 2], "stream_query": "", "workdir": "/x"},
        "environment": {"python": "3.11.7", "git_commit": "abcdef0123", "nofile": [1, 2]},
        "runs": [asdict(r) for r in runs],
    }
    loaded: dict[str, Any] = orjson.loads(orjson.dumps(json_safe(doc)))
    return loaded


def test_an_entry_keeps_the_peak_and_the_lost_steps_only() -> None:
    entry = entry_of(result_doc(sample_runs()), title="t", note="n", source="r.json")
    first = entry["runs"][0]
    assert [s["achieved"] for s in first["steps"]] == [4_400_000.0, 1.0]
    assert "lag_limit_s" not in first["max_sustained"]
    assert "counters" not in first
    assert set(entry["config"]) == {"key_streams", "rooms", "stream_query"}
    assert set(entry["environment"]) == {"python", "git_commit"}


def test_an_entry_renders_the_tables_of_its_result(tmp_path: Path) -> None:
    runs = sample_runs()
    doc = result_doc(runs)
    (tmp_path / "e.json").write_bytes(dumps(entry_of(doc, title="t", note="n", source="r.json")))
    (entry,) = load_entries(tmp_path)
    assert entry.runs[0].peak is not None
    assert entry.runs[0].peak.achieved == runs[0].peak.achieved  # type: ignore[union-attr]
    assert entry.runs[0].lost
    assert compare_markdown(
        entry.runs, CASES, key_case="1x1000", rooms_case="10x2", stream_query=""
    ) == compare_markdown(runs, CASES, key_case="1x1000", rooms_case="10x2", stream_query="")
    page = render([entry])
    history = "| 2026-12-02 12:00 UTC | `abcdef0` | 1x1000 · 10x2 | 4,000,000 | 0.80 | 20.0 |"
    assert history + " 1.00 | 0.667 | 1.8 |" in page
    assert "## 2026-12-02 12:00 UTC: t" in page


def test_published_numbers_render_without_the_every_case_table(tmp_path: Path) -> None:
    doc = {
        "journal": 1,
        "benchmark": "compare",
        "started": "20261124T055200Z",
        "when": "2026-11-24, morning",
        "title": "seed",
        "source": "README.md",
        "config": {"key_streams": 1000},
        "runs": [
            {"system": "roomlogs", "label": "roomlogs", "case": "1x1000", "rooms": 1,
             "per_room": 1000, "streams": 1000, "max_sustained": {"achieved": 7.7e6}},
        ],
    }  # fmt: skip
    (tmp_path / "seed.json").write_bytes(dumps(doc))
    (entry,) = load_entries(tmp_path)
    (run,) = entry.runs
    assert run.best == 7.7e6
    assert math.isnan(run.connect_s)
    assert run.max_sustained is not None
    assert math.isnan(run.max_sustained.server_core)
    page = render([entry])
    assert "## 2026-11-24, morning: seed" in page
    assert "#### Summary" in page
    assert "#### Every case" not in page


def test_cases_come_back_from_the_records() -> None:
    assert cases_of(sample_runs()) == [
        Case("1x1000", 1, 1000),
        Case("10x2", 10, 2),
        Case("idle", 1, 500, idle=True),
    ]


def _recorded(result: Path, into: Path) -> tuple[dict[str, Any], str]:
    """The entry `add` writes for a result file, and the page rendered from it."""
    path = add(result, "quick run", "noisy", into=into)
    entry: dict[str, Any] = orjson.loads(path.read_bytes())
    return entry, render(load_entries(into))


def test_a_publish_run_round_trips_with_its_tables(tmp_path: Path) -> None:
    result = FIXTURES / "publish.json"
    entry, page = _recorded(result, tmp_path)
    assert entry["benchmark"] == "publish"
    assert {"loads", "latency", "publisher", "notes"} <= set(entry)
    assert "goals" not in entry  # derived from the loads when drawn
    assert "workdir" not in entry["config"]
    assert "nofile" not in entry["environment"]
    printed = report_publish.markdown(report_publish.report_of(orjson.loads(result.read_bytes())))
    assert printed.replace("### ", "#### ") in page  # the table code is the command's own
    assert "## 2026-12-03 18:48 UTC: quick run" in page
    assert "| roomlogs | POST 1 log + Idempotency-Key | 16 x 8 | 341 | 341 | 28% |" in page
    assert "| redis | emit_many x100 | 8 | 15,104 |" in page
    assert "| single-log POST / nchan's POST /pub | 0.03 | ≥ 1x | **no** |" in page


def test_a_storm_run_round_trips_with_its_tables(tmp_path: Path) -> None:
    result = FIXTURES / "storm.json"
    entry, page = _recorded(result, tmp_path)
    assert [s["system"] for s in entry["systems"]] == ["roomlogs", "minimal", "nchan"]
    assert entry["config"]["streams"] == 10_000
    printed = report_storm.markdown(report_storm.runs_of(orjson.loads(result.read_bytes())))
    assert printed.replace("### ", "#### ") in page
    assert "#### Reconnect storm (median storm per system)" in page
    assert "| minimal | 10,000 | no | no | 13.0 | 1.31 | 1 | 14.64 | 683 | 85 / 811 |" in page
    # roomlogs failed before its streams were open: its memory goal is not measured, not missed
    assert "| roomlogs | 10,000 | yes | yes | n/a | n/a | 0, **failed** (notes) |" in page
    assert "| roomlogs KiB per idle stream | n/a | ≤ 1.2 KiB | n/a |" in page
    assert "- roomlogs: failed: 1 of 10000 streams failed" in page


def test_a_multiroom_run_keeps_of_its_phases_what_the_tables_read(tmp_path: Path) -> None:
    result = FIXTURES / "multiroom.json"
    entry, page = _recorded(result, tmp_path)
    (case,) = entry["cases"]
    for side in case["sides"]:
        assert side["steps"]
        assert all(set(s) <= set(MULTIROOM_STEP_KEEPS) for s in side["steps"])
    printed = multiroom.report_of(orjson.loads(result.read_bytes()))
    assert printed.replace("### ", "#### ") in page  # the same tables from the trimmed phases
    assert "#### Multi-room against one-room streams (3 s x 2 phases per side)" in page
    assert "| A | multi-room | 1 | 64 | 3,000 | 2,962 | **50.6** (36.7/64.4) |" in page
    assert "| 50.6 | 53.9 | 0.94x | met |" in page


def test_a_scaleout_run_round_trips_with_its_tables(tmp_path: Path) -> None:
    result = FIXTURES / "scaleout.json"
    entry, page = _recorded(result, tmp_path)
    assert [c["gateways"] for c in entry["configs"]] == [1, 8]
    doc = orjson.loads(result.read_bytes())
    printed = report_scaleout.markdown(report_scaleout.configs_of(doc), doc["pinning"])
    assert printed.replace("### ", "#### ") in page
    assert "| pattern | 8 | 100-158 | 8,000 (1,997) | yes | 8 psub, 0 sub | 3,061 | 8.00x |" in page
    assert "Redis Cluster: not run (not asked (--cluster-gateways 0))." in page
