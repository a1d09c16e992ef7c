"""The `limited by` verdict: which core was full, and by whom."""

from __future__ import annotations

import pytest

from bench.verdicts import Cores, bottleneck
from tests.support.bench_records import make_step

PINNED = Cores(server=[0], client=1)
UNPINNED = Cores(server=None, client=None)
SHARED = Cores(server=[0, 1], client=1)  # WORKERS=2 on both cores of a two-core machine


@pytest.mark.parametrize(
    ("fields", "verdict"),
    [
        ({"cores": {0: 0.5, 1: 0.5}}, None),
        ({"cores": {0: 0.98, 1: 0.5}, "server_core": 0.95}, "server CPU"),
        (
            {"cores": {0: 0.98, 1: 0.5}, "server_core": 0.30},
            "server core shared with other processes",
        ),
        ({"cores": {0: 0.5, 1: 0.96}, "loadgen_core": 0.80, "redis_core": 0.10}, "load generator"),
        (
            {"cores": {0: 0.5, 1: 0.96}, "loadgen_core": 0.45, "redis_core": 0.45},
            "client core (load generator 45%, redis 45%)",
        ),
        (
            {"cores": {0: 0.5, 1: 0.96}, "loadgen_core": 0.30, "redis_core": 0.05},
            "client core shared with other processes",
        ),
        (
            {"cores": {0: 0.99, 1: 0.99}, "server_core": 0.97, "loadgen_core": 0.9},
            "server CPU + load generator",
        ),
    ],
)
def test_pinned(fields: dict[str, object], verdict: str | None) -> None:
    assert bottleneck(make_step(**fields), PINNED) == verdict


def test_unpinned_reads_the_processes_own_shares() -> None:
    assert bottleneck(make_step(server_core=0.95), UNPINNED) == "server CPU"
    assert bottleneck(make_step(server_core=0.5, loadgen_core=0.95), UNPINNED) == "load generator"
    assert bottleneck(make_step(server_core=0.5), UNPINNED) is None


def test_workers_sharing_the_client_core_say_which_cores_were_full() -> None:
    both = make_step(cores={0: 0.97, 1: 0.99}, server_core=1.2, loadgen_core=0.6, redis_core=0.1)
    assert bottleneck(both, SHARED) == "both cores (server 1.20 cores, client 0.70)"
    client = make_step(cores={0: 0.80, 1: 0.99}, server_core=1.0, loadgen_core=0.7, redis_core=0.1)
    assert bottleneck(client, SHARED) == (
        "core 1 (load generator's; server 1.00 cores, client 0.80; core 0 80%)"
    )
    assert bottleneck(make_step(cores={0: 0.5, 1: 0.5}), SHARED) is None
