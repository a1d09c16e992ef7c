"""What outlives a stopped system is stopped too, and only that."""

from __future__ import annotations

import subprocess
import sys

from bench._procs import proc_start_ticks, stop_leftovers


def test_a_leftover_is_stopped_and_reported() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        started = {child.pid: proc_start_ticks(child.pid)}
        assert started[child.pid] is not None
        assert stop_leftovers(started, grace=0.1) == [child.pid]
        assert child.wait(timeout=5) != 0
    finally:
        child.kill()
        child.wait()


def test_a_process_that_is_gone_is_no_leftover() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    started = {child.pid: proc_start_ticks(child.pid)}
    child.wait()  # exited and reaped (its pid may even be reused: the start time tells)
    assert stop_leftovers(started, grace=0.1) == []
