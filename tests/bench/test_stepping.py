"""find_max: x2 until a step fails, then bisection to the resolution; driven by a fake stepper
(a system that sustains exactly `capacity` deliveries/s), no processes."""

from __future__ import annotations

import math

import pytest

from bench.records import Run, Step
from bench.stepping import LOST_NOTE, Rules, find_max, first_rate
from bench.verdicts import Cores
from tests.support.bench_records import make_step

PINNED = Cores(server=[0], client=1)


def rules(**overrides: object) -> Rules:
    fields: dict[str, object] = {
        "step_seconds": 3.0,
        "growth": 2.0,
        "resolution": 0.15,
        "max_steps": 10,
        "max_p99_ms": 500.0,
        "stop_at_client_limit": False,
    }
    fields.update(overrides)
    return Rules(**fields)  # type: ignore[arg-type]


class FakeStepper:
    """Sustains up to `capacity` deliveries/s; records every offered rate."""

    def __init__(self, capacity: float, **extra: object) -> None:
        self.capacity = capacity
        self._per_room = 1000.0
        self.cores = PINNED
        self.offered: list[float] = []
        self.extra = extra  # fields of every step (cores, dead_streams, …)
        self.noisy_first: set[float] = set()  # offered rates whose first run is noisy
        self.behind = False

    @property
    def per_room(self) -> float:
        return self._per_room

    async def step(self, rate_logs: float, seconds: float) -> Step:
        offered = rate_logs * self._per_room
        ok = offered <= self.capacity
        noisy = offered in self.noisy_first
        self.noisy_first.discard(offered)
        self.offered.append(offered)
        fields: dict[str, object] = {
            "rate_logs": rate_logs,
            "offered": offered,
            "sent": round(rate_logs * seconds),
            "achieved": offered * 0.99,
            "sustained": ok and not noisy,
            "complete": True,
            "other_server_core": 0.5 if noisy else 0.0,
        }
        fields.update(self.extra)
        fields["sustained"] = fields["sustained"] and fields["complete"]  # as a real step
        return make_step(**fields)

    def still_behind(self, step: Step) -> bool:
        return self.behind


class Quiet:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1


def rounded(values: list[float]) -> list[int]:
    return [round(v) for v in values]


async def search(stepper: FakeStepper, start: float, **rule: object) -> tuple[Run, Quiet]:
    run = Run(system="fake", label="fake", case="1x1000", rooms=1, per_room=1000, streams=1000)
    quiet = Quiet()
    await find_max(stepper, run, start, rules(**rule), lambda _: None, quiet)
    return run, quiet


async def test_doubles_until_a_step_fails_then_bisects_to_the_resolution() -> None:
    stepper = FakeStepper(capacity=75_000)
    run, _ = await search(stepper, 10_000)
    g1 = math.sqrt(40_000 * 80_000)  # 56,569: sustained
    g2 = math.sqrt(g1 * 80_000)  # 67,272: sustained
    g3 = math.sqrt(g2 * 80_000)  # 73,360: sustained, and 80,000 / 73,360 < 1.15
    assert rounded(stepper.offered) == rounded([10_000, 20_000, 40_000, 80_000, g1, g2, g3])
    assert run.max_sustained is not None
    assert run.first_failure is not None
    assert round(run.max_sustained.offered) == round(g3)
    assert run.first_failure.offered == 80_000
    assert run.first_failure.offered / run.max_sustained.offered < 1.15
    assert len(run.steps) == 7


async def test_a_start_above_the_capacity_halves_down_first() -> None:
    stepper = FakeStepper(capacity=30_000)
    run, _ = await search(stepper, 100_000)
    assert rounded(stepper.offered[:3]) == [100_000, 50_000, 25_000]
    assert run.max_sustained is not None
    assert run.first_failure is not None
    assert run.max_sustained.offered <= 30_000 < run.first_failure.offered
    assert run.first_failure.offered / run.max_sustained.offered < 1.15
    # The first failure is the lowest failed rate, not the first step that failed.
    assert run.first_failure.offered < 50_000


async def test_the_resolution_decides_when_bisection_stops() -> None:
    coarse, fine = FakeStepper(capacity=75_000), FakeStepper(capacity=75_000)
    await search(coarse, 10_000, resolution=0.5)
    await search(fine, 10_000, resolution=0.01)
    assert len(coarse.offered) == 5  # 10k 20k 40k 80k, then one bisection: 80/56.6 < 1.5
    assert len(fine.offered) > 7


async def test_at_most_max_steps_steps() -> None:
    stepper = FakeStepper(capacity=math.inf)
    run, _ = await search(stepper, 1000, max_steps=4)
    assert rounded(stepper.offered) == [1000, 2000, 4000, 8000]
    assert run.first_failure is None
    assert run.limit == "not reached"


async def test_nothing_sustained_stops_at_a_couple_of_logs_per_step() -> None:
    stepper = FakeStepper(capacity=0)
    run, _ = await search(stepper, 8000, max_steps=50)
    assert run.max_sustained is None
    assert run.limit == "nothing sustained"
    assert any("a couple of logs per step" in note for note in run.notes)
    # The last rate tried still offered at least 2 logs per step (per room).
    assert stepper.offered[-1] / 1000 * 3.0 >= 2
    assert len(stepper.offered) < 50


async def test_a_noisy_failed_step_runs_once_more_after_a_quiet_wait() -> None:
    stepper = FakeStepper(capacity=75_000)
    stepper.noisy_first = {20_000.0}
    run, quiet = await search(stepper, 10_000)
    assert rounded(stepper.offered[:4]) == [10_000, 20_000, 20_000, 40_000]
    assert quiet.calls == 1
    first, retry = run.steps[1], run.steps[2]
    assert not first.sustained
    assert not first.retried
    assert retry.sustained
    assert retry.retried
    assert any("other processes used up to 50%" in note for note in run.notes)


async def test_lost_logs_stop_the_search() -> None:
    stepper = FakeStepper(capacity=75_000)
    stepper.behind = True
    stepper.extra = {"complete": False}  # late: still behind after the drain
    run, _ = await search(stepper, 10_000)
    assert len(stepper.offered) == 1
    assert LOST_NOTE in run.notes


async def test_closed_streams_stop_the_search() -> None:
    stepper = FakeStepper(capacity=75_000, dead_streams=3)
    run, _ = await search(stepper, 100_000)
    assert len(stepper.offered) == 1
    assert LOST_NOTE in run.notes


@pytest.mark.parametrize(
    ("stop", "steps", "note"),
    [
        (True, 1, "the load generator saturated its core before a step failed"),
        (False, 4, "the load generator's core was saturated in a sustained step"),
    ],
)
async def test_a_saturated_load_generator_stops_fanout_but_not_compare(
    stop: bool, steps: int, note: str
) -> None:
    saturated = {"cores": {0: 0.5, 1: 0.97}, "loadgen_core": 0.85, "redis_core": 0.1}
    stepper = FakeStepper(capacity=75_000, **saturated)
    run, _ = await search(stepper, 10_000, stop_at_client_limit=stop, max_steps=steps)
    assert len(stepper.offered) == steps
    assert run.notes.count(note) == 1


async def test_the_limit_is_the_verdict_on_the_first_failure() -> None:
    stepper = FakeStepper(capacity=75_000, cores={0: 0.99, 1: 0.5}, server_core=0.97)
    run, _ = await search(stepper, 10_000)
    assert run.limit == "server CPU"
    quiet = FakeStepper(capacity=75_000, cores={0: 0.5, 1: 0.5}, server_core=0.5)
    run, _ = await search(quiet, 10_000)
    assert run.limit == "unclear: no core saturated"


def test_the_first_rate_is_half_the_previous_maximum() -> None:
    assert first_rate(None, 10_000) == 10_000
    assert first_rate(300_000, 10_000) == 150_000
    assert first_rate(1500, 10_000, floor=1000) == 1000
