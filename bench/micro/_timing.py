"""Best-of-N timing of a callable, per operation."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    name: str
    per: str  # what one operation is: a delivery, a message, an event
    ns: float  # per operation, best repeat
    ops: int  # operations per call of the timed function

    def row(self) -> list[str]:
        return [self.name, f"{self.ns:,.1f}", self.per, f"{self.ns * self.ops / 1000:,.2f}"]


def best_ns(fn: Callable[[], object], *, repeat: int, budget_s: float) -> float:
    """Nanoseconds per call of `fn`, the best of `repeat` timed batches of about `budget_s`."""
    fn()  # warm
    number = 1
    while True:  # as many calls per batch as fit the budget
        start = time.perf_counter_ns()
        for _ in range(number):
            fn()
        took = time.perf_counter_ns() - start
        if took >= budget_s * 1e9 / 4 or number >= 1 << 20:
            break
        number *= 2
    number = max(1, int(number * budget_s * 1e9 / max(took, 1)))
    best = float("inf")
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            start = time.perf_counter_ns()
            for _ in range(number):
                fn()
            best = min(best, (time.perf_counter_ns() - start) / number)
    finally:
        if enabled:
            gc.enable()
    return best


def measure(
    name: str, per: str, ops: int, fn: Callable[[], object], *, repeat: int, budget_s: float
) -> Result:
    return Result(name, per, best_ns(fn, repeat=repeat, budget_s=budget_s) / ops, ops)
