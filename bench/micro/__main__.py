"""`python -m bench.micro`: every micro-benchmark, one Markdown table (best of --repeat)."""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
from collections.abc import Callable, Sequence

from ..report import table
from . import codec
from ._timing import Result, measure
from .hub import turn, turn_multi

Bench = tuple[str, str, int, Callable[[], object]]  # name, per, operations per call, call


def benches(quick: bool) -> list[tuple[str, list[Bench]]]:
    sizes = [100, 1000] if quick else [100, 1000, 10_000]
    hub: list[Bench] = []
    for n in sizes:
        hub.append((f"hub 1 room x {n:,}, 1 message a turn", "delivery", n, turn(["r"], n, 1)))
    for n in sizes[-1:]:
        hub.append(
            (f"hub 1 room x {n:,}, 10 messages a turn", "delivery", 10 * n, turn(["r"], n, 10))
        )
    for rooms, per_room in ((1000, 2), (100, 10)):
        names = [f"r{i}" for i in range(rooms)]
        hub.append(
            (
                f"hub {rooms:,} rooms x {per_room}, 1 message a room a turn",
                "delivery",
                rooms * per_room,
                turn(names, per_room, 1),
            )
        )
    # Several rooms on one stream, against one-room streams with the same deliveries a turn.
    hundred = [f"r{i}" for i in range(100)]
    sixty_four = [f"r{i}" for i in range(64)]
    hub += [
        ("hub 64 one-room streams, 1 message a room", "delivery", 64, turn(sixty_four, 1, 1)),
        (
            "hub 1 stream on 64 rooms, 1 message a room",
            "delivery",
            64,
            turn_multi(sixty_four, 1, 64),
        ),
        ("hub 100 rooms x 100 one-room streams", "delivery", 10_000, turn(hundred, 100, 1)),
        ("hub 1,000 streams on 10 of 100 rooms", "delivery", 10_000, turn_multi(hundred, 1000, 10)),
    ]
    decoding: list[Bench] = [
        ("message.decode_envelope (envelope, tag, JSON, Message)", "message", 1, codec.decode_one),
        ("envelope tag check alone", "message", 1, codec.verify_tag),
        ("ids.parse_id", "id", 100, codec.parse_ids(100)),
        ("sse.Parser.feed, 1 event a read", "event", 1, codec.sse_feed(1)),
        ("sse.Parser.feed, 50 events a read", "event", 50, codec.sse_feed(50)),
    ]
    envelope: list[Bench] = [
        ("split_envelope + log_frame", "message", 1, codec.split_envelope_frame),
        ("minimal server's frame()", "message", 1, codec.minimal_server_frame),
    ]
    return [("hub", hub), ("decode", decoding), ("envelope", envelope)]


async def run(args: argparse.Namespace) -> list[Result]:
    # Inside a running loop: the hub schedules its flush with loop.call_soon.
    results = []
    for group, items in benches(args.quick):
        if args.only and group not in args.only:
            continue
        for name, per, ops, fn in items:
            results.append(measure(name, per, ops, fn, repeat=args.repeat, budget_s=args.budget))
            await asyncio.sleep(0)  # the flushes the hub scheduled (nothing left to send)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.micro", description=__doc__)
    p.add_argument("--quick", action="store_true", help="smaller hubs, shorter batches")
    p.add_argument("--only", type=lambda s: s.split(","), default=None, help="hub,decode,envelope")
    p.add_argument("--repeat", type=int, default=5, help="timed batches; the best counts")
    p.add_argument("--budget", type=float, default=None, help="seconds per batch (0.1; quick 0.03)")
    args = p.parse_args(argv)
    if args.budget is None:
        args.budget = 0.03 if args.quick else 0.1
    results = asyncio.run(run(args))
    head = ["benchmark", "ns / op", "op", "µs / call"]
    print(f"Python {platform.python_version()}, best of {args.repeat}\n")
    print("\n".join(table(head, [r.row() for r in results])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
