"""The journal: an entry keeps what the tables are made of, and renders them as the run did."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from bench.journal import cases_of, dumps, entry_of, load_entries, render
from bench.records import Case, Run
from bench.report import compare_markdown
from bench.results import json_safe
from tests.support.bench_records import CASES, make_step, sample_runs


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
