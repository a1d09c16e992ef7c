"""REDIS_TLS_* are checked at start-up as they will be used (one line naming the variable),
become redis-py's `ssl_*` arguments, and failures on the wire are explained with what to
change, never with a pipeline's arguments."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError

from service.broker._errors import explain
from service.settings import Settings, SettingsError
from tests.support.tls import Certificates, make_certificates


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


def _refusal(**env: str) -> str:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    return str(caught.value)


def test_tls_files_become_redis_py_ssl_arguments(certs: Certificates) -> None:
    settings = Settings.from_env(
        {
            "REDIS_URL": "rediss://redis:6380/0",
            "REDIS_TLS_CA_FILE": str(certs.ca),
            "REDIS_TLS_CERT_FILE": str(certs.client_cert),
            "REDIS_TLS_KEY_FILE": str(certs.client_key),
        }
    )
    assert settings.redis_options == {
        "ssl_ca_certs": str(certs.ca),
        "ssl_certfile": str(certs.client_cert),
        "ssl_keyfile": str(certs.client_key),
    }
    assert Settings.from_env({"REDIS_URL": "rediss://redis:6380/0"}).redis_options == {}


def test_a_missing_file_names_its_variable(tmp_path: Path) -> None:
    line = _refusal(REDIS_URL="rediss://r:1", REDIS_TLS_CA_FILE=str(tmp_path / "nope.pem"))
    assert line.startswith("invalid REDIS_TLS_CA_FILE: ")
    assert "No such file" in line


def test_tls_files_need_a_rediss_url(certs: Certificates) -> None:
    line = _refusal(REDIS_URL="redis://r:1", REDIS_TLS_CA_FILE=str(certs.ca))
    assert line == "invalid REDIS_TLS_CA_FILE: needs a rediss:// REDIS_URL (TLS)"
    line = _refusal(REDIS_TLS_CERT_FILE=str(certs.client_cert))
    assert line.startswith("invalid REDIS_TLS_CERT_FILE: needs a rediss://")


def test_a_ca_file_that_is_not_pem_is_refused(certs: Certificates) -> None:
    line = _refusal(REDIS_URL="rediss://r:1", REDIS_TLS_CA_FILE=str(certs.client_key))
    assert line.startswith("invalid REDIS_TLS_CA_FILE: ")
    assert "not PEM certificates" in line


def test_a_key_needs_its_certificate_and_must_match_it(certs: Certificates) -> None:
    line = _refusal(REDIS_URL="rediss://r:1", REDIS_TLS_KEY_FILE=str(certs.client_key))
    assert line == "invalid REDIS_TLS_KEY_FILE: needs REDIS_TLS_CERT_FILE (its certificate)"
    line = _refusal(
        REDIS_URL="rediss://r:1",
        REDIS_TLS_CERT_FILE=str(certs.client_cert),
        REDIS_TLS_KEY_FILE=str(certs.server_key),
    )
    assert line.startswith("invalid REDIS_TLS_KEY_FILE: ")
    assert "KEY_VALUES_MISMATCH" in line
    line = _refusal(REDIS_URL="rediss://r:1", REDIS_TLS_CERT_FILE=str(certs.client_cert))
    assert line.startswith("invalid REDIS_TLS_CERT_FILE: ")  # no key in that file


def test_explain_names_the_setting_to_change() -> None:
    verify = RedisConnectionError(
        "Error 1 connecting to r:6380. [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"
    )
    assert "(TLS: Redis' certificate is not signed" in explain(verify, client_cert=False)
    reset = RedisConnectionError(
        "Error while reading from r:6380 : (104, 'Connection reset by peer')"
    )
    assert "REDIS_TLS_CERT_FILE" in explain(reset, client_cert=False)
    assert explain(reset, client_cert=True) == f"ConnectionError: {reset}"


def test_explain_drops_a_pipeline_commands_arguments() -> None:
    exc = NoPermissionError(
        "Command # 1 (SET roomlogs:envelope-secret 0123456789abcdef NX) of pipeline caused "
        "error: ('this user has no permissions to access one of the keys used as arguments',)"
    )
    assert explain(exc, client_cert=False) == (
        "NoPermissionError: SET: this user has no permissions to access one of the keys used "
        "as arguments (the Redis user lacks a permission the gateway needs: docs/redis.md has "
        "its ACL)"
    )
