"""What outlives a stopped system is stopped too, and only that; which clients a server
still holds, told apart from its other connections."""

from __future__ import annotations

import socket
import subprocess
import sys

from bench._procs import established_peers, proc_start_ticks, stop_leftovers


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


def test_the_peers_a_server_holds_are_its_clients_ports_until_it_lets_them_go() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        stream = socket.create_connection(("127.0.0.1", port))
        publisher = socket.create_connection(("127.0.0.1", port))  # nchan's, kept open
        held, _ = server.accept()
        kept, _ = server.accept()
        try:
            stream_port = stream.getsockname()[1]
            publisher_port = publisher.getsockname()[1]
            assert {stream_port, publisher_port} <= established_peers(port)
            held.close()  # the server's side leaves ESTABLISHED as close() returns
            peers = established_peers(port)
            assert stream_port not in peers
            assert publisher_port in peers
        finally:
            for s in (stream, publisher, held, kept):
                s.close()
