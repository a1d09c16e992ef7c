"""`python -m service serve | token` as real subprocesses: exit codes, stderr, output."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import jwt
import pytest

from service.settings import FIELDS
from tests.support.factories import SECRET
from tests.support.paths import ROOT
from tests.support.servers import free_port

TIMEOUT = 30  # seconds any one command may take


# Where `serve` keeps its development secret in these tests: never the user's own.
_STATE = tempfile.mkdtemp(prefix="roomlogs-cli-state-")


def clean_env(**env: str) -> dict[str, str]:
    """The test's environment without any roomlogs variable, plus `env`."""
    names = {spec.env for spec in FIELDS} | {"ROOMLOGS_TOKEN"}
    base = {k: v for k, v in os.environ.items() if k not in names}
    return {**base, "ROOMLOGS_STATE_DIR": _STATE, **env}


def run(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        cwd=ROOT,
        env=clean_env(**env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


# -- serve: bad configuration stops start-up -------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"PORT": "http"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"REQUEST_HEAD_TIMEOUT": "0"}, "REQUEST_HEAD_TIMEOUT"),
        ({"REDIS_URL": "localhost"}, "REDIS_URL"),
        ({"JWT_ALGORITHMS": "none"}, "JWT_ALGORITHMS"),
        ({"WORKERS": "2"}, "WORKERS"),
        ({"ROOM_CHECK": "redis"}, "ROOM_CHECK"),
        ({"JWT_ALGORITHMS": "RS256"}, "JWT_PUBLIC_KEY"),
    ],
    ids=lambda v: "-".join(f"{k}={x}" for k, x in v.items()) if isinstance(v, dict) else v,
)
def test_serve_with_a_bad_value_exits_2_with_one_line_naming_it(
    env: dict[str, str], variable: str
) -> None:
    result = run("serve", **env)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith(f"roomlogs: invalid {variable}: ")
    assert result.stdout == ""


@pytest.mark.parametrize("flag", ["--port=http", "--port=-1", "--port=65536"])
def test_serve_with_a_bad_port_flag_exits_2_naming_port(flag: str) -> None:
    result = run("serve", flag, PORT="8080")
    assert result.returncode == 2
    assert one_line(result.stderr).startswith("roomlogs: invalid PORT: ")


def test_serve_flag_wins_over_a_bad_environment_value_for_the_same_variable() -> None:
    # The flag is read first, so the bad PORT is never looked at; LOG_LEVEL then stops start-up.
    result = run("serve", "--port=8080", PORT="http", LOG_LEVEL="LOUD")
    assert result.returncode == 2
    assert one_line(result.stderr).startswith("roomlogs: invalid LOG_LEVEL: ")


def test_every_variable_is_a_serve_flag() -> None:
    result = run("serve", "--help")
    assert result.returncode == 0
    for spec in FIELDS:
        assert spec.flag in result.stdout
        assert spec.env in result.stdout


def test_unknown_command_exits_2() -> None:
    result = run("launch")
    assert result.returncode == 2
    assert "launch" in result.stderr


# -- serve: the --port flag overrides PORT ---------------------------------------------------------


@contextlib.contextmanager
def serving(log: Path, *args: str, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "serve", *args],
            cwd=ROOT,
            env=clean_env(**env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


async def wait_healthy(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """Poll /healthz (no event tells when a child process starts listening), bounded."""
    deadline = time.monotonic() + TIMEOUT
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                output = await asyncio.to_thread(log.read_text)
                raise AssertionError(f"serve exited with {proc.returncode}: {output}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.05)
    output = await asyncio.to_thread(log.read_text)
    raise AssertionError(f"not healthy on port {port} in {TIMEOUT}s: {output}")


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


async def test_serve_port_flag_overrides_port_env(tmp_path: Path) -> None:
    env_port, flag_port = free_port(), free_port()
    log = tmp_path / "serve.log"
    with serving(
        log,
        "--port",
        str(flag_port),
        PORT=str(env_port),
        LISTEN_HOST="127.0.0.1",
        JWT_SECRET=SECRET,
    ) as proc:
        await wait_healthy(proc, flag_port, log)
        assert not listening(env_port)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=TIMEOUT) == 0
    assert f"http://127.0.0.1:{flag_port}" in log.read_text()


# -- token -----------------------------------------------------------------------------------------


def test_token_prints_a_token_with_the_requested_claims() -> None:
    before = int(time.time())
    result = run("token", "--rooms", "a,b", "--publish", "a", "--ttl", "60", "--sub", "me",
                 JWT_SECRET=SECRET)  # fmt: skip
    after = int(time.time())
    assert result.returncode == 0, result.stderr
    tok = one_line(result.stdout)
    claims = jwt.decode(tok, SECRET, algorithms=["HS256"])
    assert claims["rooms"] == ["a", "b"]
    assert claims["publish"] == ["a"]
    assert claims["sub"] == "me"
    assert claims["exp"] - claims["iat"] == 60
    assert before <= claims["iat"] <= after
    assert jwt.get_unverified_header(tok)["alg"] == "HS256"


def test_token_defaults_read_all_rooms_publish_none() -> None:
    result = run("token", JWT_SECRET=SECRET)
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(one_line(result.stdout), SECRET, algorithms=["HS256"])
    assert claims["rooms"] == "*"
    assert "publish" not in claims
    assert "sub" not in claims
    assert claims["exp"] - claims["iat"] == 3600


def test_token_uses_issuer_audience_and_first_hs_algorithm() -> None:
    result = run(
        "token",
        "--publish",
        "*",
        JWT_SECRET=SECRET + "-" * 30,
        JWT_ALGORITHMS="HS384,HS256",
        JWT_ISSUER="https://id.example",
        JWT_AUDIENCE="roomlogs",
    )
    assert result.returncode == 0, result.stderr
    tok = one_line(result.stdout)
    assert jwt.get_unverified_header(tok)["alg"] == "HS384"
    claims = jwt.decode(
        tok,
        SECRET + "-" * 30,
        algorithms=["HS384"],
        issuer="https://id.example",
        audience="roomlogs",
    )
    assert claims["publish"] == "*"


def test_token_secret_flag_signs_without_jwt_secret() -> None:
    result = run("token", "--secret", SECRET)
    assert result.returncode == 0, result.stderr
    jwt.decode(one_line(result.stdout), SECRET, algorithms=["HS256"])


def test_token_without_jwt_secret_exits_2_naming_it() -> None:
    result = run("token", "--rooms", "a")
    assert result.returncode == 2
    assert result.stdout == ""
    line = one_line(result.stderr)
    assert line.startswith("roomlogs: invalid JWT_SECRET: ")


def test_token_with_a_bad_environment_exits_2_naming_the_variable() -> None:
    result = run("token", JWT_SECRET=SECRET, JWT_LEEWAY="soon")
    assert result.returncode == 2
    assert one_line(result.stderr).startswith("roomlogs: invalid JWT_LEEWAY: ")


# -- a newcomer's CLI (issue 15, item 7) ----------------------------------------------------------


async def test_serve_without_a_key_keeps_its_secret_listens_locally_and_token_signs_for_it(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    port = free_port()
    url = f"http://127.0.0.1:{port}/api/v1/rooms/demo/logs"

    async def accepted(token: str) -> int:
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {token}"}
            async with http.post(
                url, json={"agentType": "cli", "level": "info", "message": "hi"}, headers=headers
            ) as r:
                return r.status

    printed = ""
    for restart in range(2):
        log = tmp_path / f"serve-{restart}.log"
        with serving(log, PORT=str(port), ROOMLOGS_STATE_DIR=str(state)) as proc:
            await wait_healthy(proc, port, log)
            out = log.read_text()
            line = next(x for x in out.splitlines() if "export ROOMLOGS_TOKEN=" in x)
            token = line.split("export ROOMLOGS_TOKEN=", 1)[1].strip()
            assert "publish: curl" in out
            assert "listening on 127.0.0.1 only" in out
            if restart == 0:
                printed = token
            else:  # the secret was kept: the token printed before the restart still works
                assert await accepted(printed) == 202
            minted = run(
                "token", "--rooms", "demo", "--publish", "demo", ROOMLOGS_STATE_DIR=str(state)
            )
            assert minted.returncode == 0, minted.stderr
            assert "development secret" in minted.stderr
            assert await accepted(minted.stdout.strip()) == 202
    assert oct((state / "dev-secret").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("token", "--ttl", "0"), "--ttl"),
        (("token", "--ttl", "-5"), "--ttl"),
        (("publish", "demo", "x", "--level", "loud", "--url", "http://127.0.0.1:9"), "--level"),
    ],
)
def test_bad_flags_are_refused_before_anything_is_sent(args: tuple[str, ...], needle: str) -> None:
    result = run(*args, JWT_SECRET=SECRET)
    assert result.returncode == 2
    assert needle in result.stderr
    assert "connect" not in result.stderr.lower()


def test_help_lists_every_command_and_no_command_shows_it() -> None:
    for result in (run("--help"), run()):
        text = result.stdout + result.stderr
        for command in ("serve", "token", "publish", "tail"):
            assert f"    {command} " in text
    assert run().returncode == 2


def test_a_short_secret_is_one_line_of_ours_not_pyjwts_warning() -> None:
    result = run("token", "--secret", "short")
    assert result.returncode == 0
    assert (
        one_line(result.stderr) == "roomlogs token: the secret is 5 bytes; HS256 wants at least 32"
    )


async def test_publish_reads_lines_from_stdin_and_a_refusal_names_the_token_flag(
    tmp_path: Path,
) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    with serving(log, PORT=str(port), LISTEN_HOST="127.0.0.1", JWT_SECRET=SECRET) as proc:
        await wait_healthy(proc, port, log)
        base = f"http://127.0.0.1:{port}"
        token = run("token", "--rooms", "r", "--publish", "r", JWT_SECRET=SECRET).stdout.strip()
        result = run("publish", "r", "--url", base, "--token", token, stdin="one\n\ntwo\n")
        assert result.returncode == 0, result.stderr
        assert len(result.stdout.split()) == 2  # two ids: the empty line is no log
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {token}"}
            async with http.get(f"{base}/api/v1/rooms/r/logs/history", headers=headers) as r:
                logs = (await r.json())["logs"]
        assert [x["message"] for x in logs] == ["one", "two"]
        refused = run("publish", "r", "hi", "--url", base, "--token", "not-a-token")
        assert refused.returncode == 1
        assert "--token" in refused.stderr
        assert "ROOMLOGS_TOKEN" in refused.stderr
