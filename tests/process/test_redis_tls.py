"""Managed Redis over TLS (`rediss://`): a real redis-server serving TLS only, with
certificates made for the run (tests/support/tls.py). The gateway trusts REDIS_TLS_CA_FILE,
presents REDIS_TLS_CERT_FILE/REDIS_TLS_KEY_FILE when Redis asks for a client certificate, and
says in /readyz what is wrong when the TLS configuration does not fit."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.factories import StartService
from tests.support.paths import ROOT
from tests.support.roundtrip import stream_publish_history, unready_service, wait_unready
from tests.support.servers import RedisServer
from tests.support.tls import Certificates, make_certificates


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_redis(certs: Certificates) -> Iterator[RedisServer]:
    server = RedisServer(tls=certs)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mtls_redis(certs: Certificates) -> Iterator[RedisServer]:
    server = RedisServer(tls=certs, tls_auth_clients=True)
    server.start()
    yield server
    server.stop()


async def test_rediss_with_the_ca_streams_publishes_and_stores(
    service: StartService, tls_redis: RedisServer, certs: Certificates, room: str
) -> None:
    assert tls_redis.url.startswith("rediss://")
    srv = await service(REDIS_URL=tls_redis.url, REDIS_TLS_CA_FILE=str(certs.ca))
    await stream_publish_history(srv.url, room)
    # It really went through this Redis: the log is in its history stream.
    assert tls_redis.cli("XLEN", f"room:{room}:history").strip() == "1"


async def test_rediss_without_the_ca_is_unready_naming_the_certificate(
    tmp_path: Path, tls_redis: RedisServer
) -> None:
    async with unready_service(tmp_path / "gw.log", REDIS_URL=tls_redis.url) as srv:
        reason = await wait_unready(srv.url, "certificate verify failed")
        assert "REDIS_TLS_CA_FILE" in reason
        assert reason.startswith("broker: redis unreachable:")
        assert "certificate verify failed" in srv.output()  # the log line says it too


async def test_rediss_trusting_another_ca_is_unready(
    tmp_path: Path, tls_redis: RedisServer, certs: Certificates
) -> None:
    env = {"REDIS_URL": tls_redis.url, "REDIS_TLS_CA_FILE": str(certs.other_ca)}
    async with unready_service(tmp_path / "gw.log", **env) as srv:
        await wait_unready(srv.url, "CERTIFICATE_VERIFY_FAILED")


async def test_client_certificate_required_and_presented(
    service: StartService, mtls_redis: RedisServer, certs: Certificates, room: str
) -> None:
    srv = await service(
        REDIS_URL=mtls_redis.url,
        REDIS_TLS_CA_FILE=str(certs.ca),
        REDIS_TLS_CERT_FILE=str(certs.client_cert),
        REDIS_TLS_KEY_FILE=str(certs.client_key),
    )
    await stream_publish_history(srv.url, room)


async def test_client_certificate_required_and_missing_is_unready_naming_the_settings(
    tmp_path: Path, mtls_redis: RedisServer, certs: Certificates
) -> None:
    env = {"REDIS_URL": mtls_redis.url, "REDIS_TLS_CA_FILE": str(certs.ca)}
    async with unready_service(tmp_path / "gw.log", **env) as srv:
        reason = await wait_unready(srv.url, "REDIS_TLS_CERT_FILE")
        assert "tls-auth-clients" in reason


async def test_roomlogs_publish_uses_the_tls_settings(
    mtls_redis: RedisServer, certs: Certificates, room: str
) -> None:
    """`roomlogs publish` is the service's other Redis client: the same variables apply."""
    env = {
        "REDIS_URL": mtls_redis.url,
        "REDIS_TLS_CA_FILE": str(certs.ca),
        "REDIS_TLS_CERT_FILE": str(certs.client_cert),
        "REDIS_TLS_KEY_FILE": str(certs.client_key),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", "publish", room, "over tls",
        cwd=ROOT, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    stored = mtls_redis.cli("XRANGE", f"room:{room}:history", "-", "+")
    assert out.decode().strip() in stored
    assert "over tls" in stored


async def test_a_bad_tls_flag_stops_serve_with_one_line_naming_it(
    tls_redis: RedisServer, certs: Certificates
) -> None:
    """The flags are the variables' (`--redis-tls-key-file` ↔ REDIS_TLS_KEY_FILE)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", "serve", "--redis-url", tls_redis.url,
        "--redis-tls-cert-file", str(certs.client_cert),
        "--redis-tls-key-file", str(certs.server_key),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        _, err = await proc.communicate()
    assert proc.returncode == 2
    [line] = err.decode().splitlines()
    assert line.startswith("roomlogs: invalid REDIS_TLS_KEY_FILE: the certificate ")
    assert "KEY_VALUES_MISMATCH" in line
