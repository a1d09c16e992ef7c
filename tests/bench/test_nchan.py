"""nchan's config and error log, read without starting it: how long its messages are held
(what a resumed stream replays), and its worker's crashes as nginx logs them."""

from __future__ import annotations

from pathlib import Path

from bench.systems.nchan import Nchan, crashes_in

# nginx's error log as nchan 1.3.6 leaves it when a resume crashes its worker (twice).
CRASHED = """\
2026/12/04 01:24:29 [alert] 17662#17662: setrlimit(RLIMIT_NOFILE, 65536) failed (1: x)
ker process: ././src/store/spool.c:479: spool_fetch_msg: Assertion `spool->msg_status == \
MSG_INVALID' failed.
2026/12/04 01:26:34 [alert] 17661#17661: worker process 17662 exited on signal 6
ker process: ././src/store/spool.c:479: spool_fetch_msg: Assertion `spool->msg_status == \
MSG_INVALID' failed.
2026/12/04 01:26:34 [alert] 17661#17661: worker process 18017 exited on signal 6
"""


def test_its_worker_crashes_are_counted_with_the_assertion() -> None:
    crashes, assertion = crashes_in(CRASHED)
    assert crashes == 2
    assert assertion == (
        "././src/store/spool.c:479: spool_fetch_msg: Assertion "
        "`spool->msg_status == MSG_INVALID' failed."
    )
    assert crashes_in("2026/12/04 01:24:29 [alert] 1#1: setrlimit failed\n") == (0, None)


def test_the_message_timeout_is_the_publisher_locations(tmp_path: Path) -> None:
    assert "nchan_message_timeout 60s;" in Nchan("", tmp_path, None, 0).config()
    held = Nchan("", tmp_path, None, 0, message_timeout_s=3600)
    assert "nchan_message_timeout 3600s;" in held.config()
    assert held.worker_crashes() == (0, None)  # no error log yet
