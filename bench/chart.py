"""The chart of a `bench.compare` run: deliveries/s and latency against streams per room.

    .venv/bin/python -m bench.chart bench/results/compare-<timestamp>.json [--out PNG]

Left: max sustained deliveries/s with no loss against streams per room, one line per system
(1 room x N, plus the many-rooms case at its streams per room as a separate marker). Right:
publish->receive latency (p50 dashed, p99 solid) in the latency phase of each case.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import orjson

from .report import ORDER

STYLE: Final = {
    "roomlogs": ("tab:blue", "o"),
    "minimal": ("tab:green", "s"),
    "nchan": ("tab:orange", "^"),
    "tutorial": ("tab:red", "v"),
}


def _series(runs: Sequence[dict[str, Any]], system: str, value: str) -> list[tuple[int, float]]:
    points: list[tuple[int, float]] = []
    for r in runs:
        if r["system"] != system or r["rooms"] != 1 or r["workers"] != 1:
            continue
        if value == "rate":
            best = r.get("max_sustained")
            if best and best.get("achieved"):
                points.append((r["per_room"], best["achieved"]))
        else:
            step = r.get("latency_step")
            lat = step and step.get("latency")
            if lat and lat.get(value) is not None:
                points.append((r["per_room"], lat[value]))
    return sorted(points)


def draw(doc: dict[str, Any], path: Path) -> Path:
    import matplotlib  # type: ignore[import-not-found, unused-ignore]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]

    runs: list[dict[str, Any]] = doc["runs"]
    systems = [s for s in ORDER if any(r["system"] == s for r in runs)]
    labels = {r["system"]: r["label"] for r in runs}
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))
    for system in systems:
        color, marker = STYLE.get(system, ("tab:gray", "x"))
        points = _series(runs, system, "rate")
        if points:
            xs, ys = zip(*points, strict=True)
            left.plot(xs, ys, color=color, marker=marker, label=labels[system])
        many = [
            r
            for r in runs
            if r["system"] == system and r["rooms"] > 1 and (r.get("max_sustained") or {})
        ]
        for r in many:
            left.scatter(
                [r["per_room"]],
                [r["max_sustained"]["achieved"]],
                color=color,
                marker=marker,
                facecolors="none",
                s=70,
            )
        for pct, dash in (("p99_ms", "-"), ("p50_ms", "--")):
            pts = _series(runs, system, pct)
            if pts:
                xs, ys = zip(*pts, strict=True)
                right.plot(
                    xs,
                    ys,
                    color=color,
                    marker=marker,
                    linestyle=dash,
                    label=labels[system] if pct == "p99_ms" else None,
                )
    rooms_note = next(
        (f"hollow: {r['rooms']:,} rooms x {r['per_room']}" for r in runs if r["rooms"] > 1), ""
    )
    left.set(
        xscale="log",
        yscale="log",
        xlabel="streams per room",
        ylabel="max sustained deliveries/s (no loss)",
        title="Fan-out throughput, server on one core"
        + (f"\n({rooms_note})" if rooms_note else ""),
    )
    right.set(
        xscale="log",
        yscale="log",
        xlabel="streams per room (1 room)",
        ylabel="publish -> receive latency, ms",
        title="Latency, 20,000 deliveries/s (p99 solid, p50 dashed)\n"
        "(the tutorial pattern at half its max)",
    )
    ticks = sorted({int(r["per_room"]) for r in runs if not r["case"].startswith("idle")})
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        ax.set_xticks(ticks if ax is left else [t for t in ticks if t > 2])
        ax.set_xticklabels(
            [f"{t:,}" for t in (ticks if ax is left else [t for t in ticks if t > 2])]
        )
        ax.minorticks_off()
        ax.grid(True, which="major", axis="y", alpha=0.3)
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    env = doc.get("environment", {})
    fig.suptitle(
        f"bench.compare {doc.get('started', '')}: {env.get('cpu', '')}, "
        f"{env.get('cpus', '?')} cores, Python {env.get('python', '')}",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.chart", description=__doc__)
    p.add_argument("json", type=Path, help="a bench/results/compare-*.json")
    p.add_argument("--out", type=Path, default=Path("docs/bench-fanout.png"))
    args = p.parse_args(argv)
    print(draw(orjson.loads(args.json.read_bytes()), args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
