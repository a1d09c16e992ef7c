"""`Settings.from_env`: every variable of DESIGN.md parses; every bad value names its variable."""

from __future__ import annotations

import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from service.settings import ALLOWED_ALGORITHMS, FIELDS, Settings, SettingsError
from tests.support.tls import make_certificates

PEM = (
    ec.generate_private_key(ec.SECP256R1())
    .public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
ASYMMETRIC = {"JWT_ALGORITHMS": "ES256"}
REDIS = {"REDIS_URL": "redis://127.0.0.1:6379/0"}
# The TLS variables name files that must load: made once for the module, removed at exit.
_TLS_DIR = tempfile.TemporaryDirectory(prefix="roomlogs-settings-tls-")
TLS = make_certificates(Path(_TLS_DIR.name))
REDISS = {"REDIS_URL": "rediss://127.0.0.1:6380/0"}

# variable, raw value, extra environment the value needs, attribute, parsed value
GOOD: list[tuple[str, str, dict[str, str], str, Any]] = [
    ("LISTEN_HOST", "127.0.0.1", {}, "listen_host", "127.0.0.1"),
    ("PORT", "9090", {}, "port", 9090),
    ("PORT", "0", {}, "port", 0),
    ("PORT", "65535", {}, "port", 65535),
    ("REDIS_URL", "redis://r:6379/1", {}, "redis_url", "redis://r:6379/1"),
    ("REDIS_URL", "rediss://r:6380/0", {}, "redis_url", "rediss://r:6380/0"),
    ("REDIS_URL", "unix:///run/redis.sock", {}, "redis_url", "unix:///run/redis.sock"),
    ("REDIS_SENTINELS", "s1:26379, [::1]:26380", {}, "redis_sentinels",
     (("s1", 26379), ("::1", 26380))),
    ("REDIS_SENTINEL_MASTER", "logs", {}, "redis_sentinel_master", "logs"),
    ("REDIS_CLUSTER_NODES", "c1:7000,c2:7001", {}, "redis_cluster_nodes",
     (("c1", 7000), ("c2", 7001))),
    ("SUBSCRIBE_MODE", "rooms", {}, "subscribe_mode", "rooms"),
    ("SUBSCRIBE_MODE", "pattern", {}, "subscribe_mode", "pattern"),
    ("UNSUBSCRIBE_LINGER", "0.5", {}, "unsubscribe_linger", 0.5),
    ("PLAIN_KEEPERS", "1", {}, "plain_keepers", 1),
    ("PLAIN_KEEPERS", "0", {}, "plain_keepers", 0),
    ("PUBLISH_REPLICAS", "1", REDIS, "publish_replicas", 1),
    ("PUBLISH_REPLICAS_TIMEOUT_MS", "500", {}, "publish_replicas_timeout_ms", 500),
    ("MAX_ROOMS_PER_STREAM", "8", {}, "max_rooms_per_stream", 8),
    ("JWT_SECRET", "s3cret", {}, "jwt_secret", "s3cret"),
    ("JWT_PUBLIC_KEY", PEM, ASYMMETRIC, "jwt_public_key", PEM),
    ("JWT_JWKS_URL", "https://id.example/jwks", ASYMMETRIC, "jwt_jwks_url", "https://id.example/jwks"),
    ("JWT_ALGORITHMS", "HS256", {}, "jwt_algorithms", ("HS256",)),
    ("JWT_ALGORITHMS", " HS256 , HS512 ,", {}, "jwt_algorithms", ("HS256", "HS512")),
    ("JWT_ISSUER", "https://id.example", {}, "jwt_issuer", "https://id.example"),
    ("JWT_AUDIENCE", "roomlogs", {}, "jwt_audience", "roomlogs"),
    ("JWT_LEEWAY", "0", {}, "jwt_leeway", 0.0),
    ("JWT_LEEWAY", "2.5", {}, "jwt_leeway", 2.5),
    ("AUTH_COOKIE", "rl", {}, "auth_cookie", "rl"),
    ("HEARTBEAT_INTERVAL", "0.5", {}, "heartbeat_interval", 0.5),
    ("RETRY_MS", "0", {}, "retry_ms", 0),
    ("RETRY_MS", "1500", {}, "retry_ms", 1500),
    ("HISTORY_MAX", "50", {}, "history_max", 50),
    ("HISTORY_TTL", "3600", {}, "history_ttl", 3600),
    ("IDEMPOTENCY_TTL", "60", {}, "idempotency_ttl", 60),
    ("REDIS_POOL_SIZE", "16", {}, "redis_pool_size", 16),
    ("REDIS_POOL_TIMEOUT", "0.5", {}, "redis_pool_timeout", 0.5),
    ("REDIS_TLS_CA_FILE", str(TLS.ca), REDISS, "redis_tls_ca_file", str(TLS.ca)),
    ("REDIS_TLS_CERT_FILE", str(TLS.client_cert),
     {**REDISS, "REDIS_TLS_KEY_FILE": str(TLS.client_key)},
     "redis_tls_cert_file", str(TLS.client_cert)),
    ("REDIS_TLS_KEY_FILE", str(TLS.client_key),
     {**REDISS, "REDIS_TLS_CERT_FILE": str(TLS.client_cert)},
     "redis_tls_key_file", str(TLS.client_key)),
    ("SUBSCRIBER_BUFFER", "64", {}, "subscriber_buffer", 64),
    ("MAX_CONNECTIONS", "5", {}, "max_connections", 5),
    ("MAX_MESSAGE_BYTES", "256", {}, "max_message_bytes", 256),
    ("MAX_MESSAGE_BYTES", "1048576", {}, "max_message_bytes", 1 << 20),
    ("CORS_ORIGINS", "https://a.example, https://b.example", {}, "cors_origins",
     ("https://a.example", "https://b.example")),
    ("ROOM_CHECK", "off", {}, "room_check", "off"),
    ("ROOM_CHECK", "redis", REDIS, "room_check", "redis"),
    ("WORKERS", "1", {}, "workers", 1),
    ("WORKERS", "4", REDIS, "workers", 4),
    ("SHUTDOWN_TIMEOUT", "2.5", {}, "shutdown_timeout", 2.5),
    ("REQUEST_HEAD_TIMEOUT", "0.5", {}, "request_head_timeout", 0.5),
    ("REQUEST_HEAD_TIMEOUT", "30", {}, "request_head_timeout", 30.0),
    ("KEEPALIVE_TIMEOUT", "120", {}, "keepalive_timeout", 120.0),
    ("LOG_FORMAT", "json", {}, "log_format", "json"),
    ("LOG_FORMAT", "text", {}, "log_format", "text"),
    ("LOG_LEVEL", "debug", {}, "log_level", "DEBUG"),
    ("LOG_LEVEL", "WARNING", {}, "log_level", "WARNING"),
]  # fmt: skip


def test_every_variable_has_a_parse_case() -> None:
    assert {case[0] for case in GOOD} == {spec.env for spec in FIELDS}


@pytest.mark.parametrize(
    ("variable", "raw", "extra", "attr", "expected"),
    GOOD,
    ids=[f"{c[0]}={c[1][:24]!r}" for c in GOOD],
)
def test_variable_parses(
    variable: str, raw: str, extra: dict[str, str], attr: str, expected: Any
) -> None:
    settings = Settings.from_env({**extra, variable: raw})
    assert getattr(settings, attr) == expected


def test_defaults_match_design() -> None:
    s = Settings.from_env({"JWT_SECRET": "k" * 32})
    assert (s.listen_host, s.port, s.redis_url) == ("0.0.0.0", 8080, None)
    assert (s.jwt_public_key, s.jwt_jwks_url) == (None, None)
    assert (s.jwt_algorithms, s.jwt_issuer, s.jwt_audience, s.jwt_leeway) == (
        ("HS256",),
        None,
        None,
        30.0,
    )
    assert s.auth_cookie == "roomlogs_token"
    assert (s.heartbeat_interval, s.retry_ms) == (30.0, 3000)
    assert (s.history_max, s.history_ttl) == (1000, 86400)
    assert (s.subscriber_buffer, s.max_connections, s.max_message_bytes) == (1000, 10000, 65536)
    assert (s.cors_origins, s.room_check, s.workers, s.shutdown_timeout) == ((), "off", 1, 10.0)
    assert (s.log_format, s.log_level) == ("text", "INFO")
    assert (s.request_head_timeout, s.keepalive_timeout) == (10.0, 75.0)
    assert (s.subscribe_mode, s.unsubscribe_linger, s.max_rooms_per_stream) == ("pattern", 5.0, 64)
    assert (s.redis_sentinels, s.redis_sentinel_master, s.redis_cluster_nodes) == (
        (),
        "mymaster",
        (),
    )
    assert (s.publish_replicas, s.publish_replicas_timeout_ms) == (0, 200)
    assert not s.ephemeral_secret  # a key; without one see test_any_key_turns_off…


def test_empty_value_means_unset() -> None:
    env = {spec.env: "" for spec in FIELDS}
    assert Settings.from_env(env) == Settings(listen_host="127.0.0.1")  # no key: see below


@pytest.mark.parametrize(
    ("env", "host"),
    [
        ({}, "127.0.0.1"),  # no key: the development secret's server answers this machine only
        ({"LISTEN_HOST": "0.0.0.0"}, "0.0.0.0"),  # unless told otherwise
        ({"JWT_SECRET": "k" * 32}, "0.0.0.0"),  # a key: DESIGN.md's default
        ({"JWT_SECRET": "k" * 32, "LISTEN_HOST": "::1"}, "::1"),
    ],
)
def test_without_a_key_serve_listens_on_loopback_unless_told(
    env: dict[str, str], host: str
) -> None:
    assert Settings.from_env(env).listen_host == host


def test_public_key_may_be_a_file_path(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_text(PEM)
    settings = Settings.from_env({**ASYMMETRIC, "JWT_PUBLIC_KEY": str(path)})
    assert settings.jwt_public_key == PEM
    assert not settings.ephemeral_secret


def test_overrides_win_over_the_environment() -> None:
    settings = Settings.from_env({"PORT": "1234", "LOG_LEVEL": "ERROR"}, port="4321")
    assert settings.port == 4321
    assert settings.log_level == "ERROR"


def test_a_bad_environment_value_is_not_read_when_overridden() -> None:
    assert Settings.from_env({"PORT": "not-a-port"}, port="8081").port == 8081


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for spec in FIELDS:
        monkeypatch.delenv(spec.env, raising=False)
    monkeypatch.setenv("PORT", "7001")
    assert Settings.from_env().port == 7001


@pytest.mark.parametrize("secret_var", ["JWT_SECRET", "JWT_PUBLIC_KEY", "JWT_JWKS_URL"])
def test_any_key_turns_off_the_ephemeral_secret(secret_var: str) -> None:
    value = {"JWT_SECRET": "s", "JWT_PUBLIC_KEY": PEM, "JWT_JWKS_URL": "https://x/jwks"}
    extra = {} if secret_var == "JWT_SECRET" else ASYMMETRIC
    assert not Settings.from_env({**extra, secret_var: value[secret_var]}).ephemeral_secret


# -- bad single values -----------------------------------------------------------------------------

BAD: list[tuple[str, str]] = [
    ("LISTEN_HOST", "   "),
    ("PORT", "http"),
    ("PORT", "80.5"),
    ("PORT", "-1"),
    ("PORT", "65536"),
    ("REDIS_URL", "localhost:6379"),
    ("REDIS_URL", "http://r:6379"),
    ("REDIS_SENTINELS", "s1"),
    ("REDIS_SENTINELS", "s1:0"),
    ("REDIS_SENTINELS", ":26379"),
    ("REDIS_CLUSTER_NODES", "c1:port"),
    ("REDIS_SENTINEL_MASTER", " "),
    ("SUBSCRIBE_MODE", "channels"),
    ("UNSUBSCRIBE_LINGER", "-1"),
    ("PLAIN_KEEPERS", "-1"),
    ("PUBLISH_REPLICAS", "-1"),
    ("PUBLISH_REPLICAS_TIMEOUT_MS", "0"),
    ("MAX_ROOMS_PER_STREAM", "0"),
    ("JWT_SECRET", "  "),
    ("JWT_PUBLIC_KEY", "/does/not/exist.pem"),
    ("JWT_PUBLIC_KEY", "not a key at all"),
    ("JWT_JWKS_URL", "ftp://id.example/jwks"),
    ("JWT_JWKS_URL", "id.example/jwks"),
    ("JWT_ALGORITHMS", ","),
    ("JWT_ALGORITHMS", "none"),
    ("JWT_ALGORITHMS", "None"),
    ("JWT_ALGORITHMS", "HS256,none"),
    ("JWT_ALGORITHMS", "hs256"),
    ("JWT_ALGORITHMS", "MD5"),
    ("JWT_ISSUER", " "),
    ("JWT_AUDIENCE", " "),
    ("JWT_LEEWAY", "-1"),
    ("JWT_LEEWAY", "soon"),
    ("JWT_LEEWAY", "nan"),
    ("AUTH_COOKIE", " "),
    ("HEARTBEAT_INTERVAL", "0"),
    ("HEARTBEAT_INTERVAL", "inf"),
    ("HEARTBEAT_INTERVAL", "30s"),
    ("RETRY_MS", "1.5"),
    ("RETRY_MS", "-5"),
    ("HISTORY_MAX", "0"),
    ("HISTORY_TTL", "0"),
    ("HISTORY_TTL", "forever"),
    ("IDEMPOTENCY_TTL", "0"),
    ("REDIS_POOL_SIZE", "1"),
    ("REDIS_POOL_TIMEOUT", "-1"),
    ("REDIS_TLS_CA_FILE", "/nonexistent/ca.pem"),
    ("REDIS_TLS_CERT_FILE", "/nonexistent/client.pem"),
    ("REDIS_TLS_KEY_FILE", "/nonexistent/client-key.pem"),
    ("IDEMPOTENCY_TTL", "-5"),
    ("SUBSCRIBER_BUFFER", "0"),
    ("MAX_CONNECTIONS", "0"),
    ("MAX_MESSAGE_BYTES", "255"),
    ("MAX_MESSAGE_BYTES", "64k"),
    ("ROOM_CHECK", "on"),
    ("ROOM_CHECK", "REDIS"),
    ("WORKERS", "0"),
    ("WORKERS", "auto"),
    ("SHUTDOWN_TIMEOUT", "-1"),
    ("REQUEST_HEAD_TIMEOUT", "0"),
    ("REQUEST_HEAD_TIMEOUT", "10s"),
    ("REQUEST_HEAD_TIMEOUT", "inf"),
    ("KEEPALIVE_TIMEOUT", "0"),
    ("KEEPALIVE_TIMEOUT", "never"),
    ("LOG_FORMAT", "xml"),
    ("LOG_LEVEL", "LOUD"),
]


@pytest.mark.parametrize(("variable", "raw"), BAD, ids=[f"{v}={r!r}" for v, r in BAD])
def test_bad_value_raises_settings_error_naming_the_variable(variable: str, raw: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: raw})
    assert caught.value.variable == variable
    message = str(caught.value)
    assert variable in message
    assert "\n" not in message


def test_every_variable_has_a_bad_value_case() -> None:
    # CORS_ORIGINS takes any list of origins: it has no bad value.
    assert {v for v, _ in BAD} == {spec.env for spec in FIELDS} - {"CORS_ORIGINS"}


def test_settings_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"^invalid PORT: "):
        Settings.from_env({"PORT": "x"})


def test_first_bad_variable_is_the_one_named() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"PORT": "x", "WORKERS": "x"})
    assert caught.value.variable == "PORT"


# -- cross-field rules -----------------------------------------------------------------------------

CROSS: list[tuple[str, dict[str, str], str]] = [
    ("workers-without-redis", {"WORKERS": "2"}, "WORKERS"),
    ("rs256-without-key", {"JWT_ALGORITHMS": "RS256"}, "JWT_PUBLIC_KEY"),
    ("es256-with-secret-only", {"JWT_ALGORITHMS": "HS256,ES256", "JWT_SECRET": "s"},
     "JWT_PUBLIC_KEY"),
    ("key-and-jwks", {**ASYMMETRIC, "JWT_PUBLIC_KEY": PEM, "JWT_JWKS_URL": "https://x/jwks"},
     "JWT_PUBLIC_KEY"),
    ("public-key-with-hs-only", {"JWT_PUBLIC_KEY": PEM}, "JWT_ALGORITHMS"),
    ("jwks-with-hs-only", {"JWT_JWKS_URL": "https://x/jwks"}, "JWT_ALGORITHMS"),
    ("room-check-without-redis", {"ROOM_CHECK": "redis"}, "ROOM_CHECK"),
    ("tls-ca-without-rediss", {**REDIS, "REDIS_TLS_CA_FILE": str(TLS.ca)}, "REDIS_TLS_CA_FILE"),
    ("tls-key-without-cert", {**REDISS, "REDIS_TLS_KEY_FILE": str(TLS.client_key)},
     "REDIS_TLS_KEY_FILE"),
    ("tls-key-of-another-cert", {**REDISS, "REDIS_TLS_CERT_FILE": str(TLS.client_cert),
     "REDIS_TLS_KEY_FILE": str(TLS.server_key)}, "REDIS_TLS_KEY_FILE"),
    ("algorithms-none", {"JWT_ALGORITHMS": "none"}, "JWT_ALGORITHMS"),
    ("algorithms-none-with-rs", {"JWT_ALGORITHMS": "RS256,none", "JWT_PUBLIC_KEY": PEM},
     "JWT_ALGORITHMS"),
]  # fmt: skip


@pytest.mark.parametrize(("env", "variable"), [c[1:] for c in CROSS], ids=[c[0] for c in CROSS])
def test_cross_field_rule_names_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert caught.value.variable == variable
    assert variable in str(caught.value)


@pytest.mark.parametrize(
    "env",
    [
        {"WORKERS": "2", **REDIS},
        {"ROOM_CHECK": "redis", **REDIS},
        {"JWT_ALGORITHMS": "HS256,ES256", "JWT_SECRET": "s", "JWT_PUBLIC_KEY": PEM},
        {"JWT_ALGORITHMS": "ES256", "JWT_JWKS_URL": "https://x/jwks"},
        {"JWT_ALGORITHMS": ",".join(sorted(ALLOWED_ALGORITHMS)), "JWT_PUBLIC_KEY": PEM},
    ],
    ids=["workers-with-redis", "room-check-with-redis", "hs-and-es", "jwks", "all-algorithms"],
)
def test_cross_field_rule_is_satisfied(env: dict[str, str]) -> None:
    Settings.from_env(env)


def test_check_runs_on_overrides_too() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({}, workers="3")
    assert caught.value.variable == "WORKERS"


def test_fields_table_covers_every_setting() -> None:
    assert [spec.attr for spec in FIELDS] == [f.name for f in fields(Settings)]
    assert all(spec.flag == "--" + spec.attr.replace("_", "-") for spec in FIELDS)


def test_public_key_file_without_a_pem_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "key.txt"
    path.write_text("just some text\n")
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**ASYMMETRIC, "JWT_PUBLIC_KEY": str(path)})
    assert caught.value.variable == "JWT_PUBLIC_KEY"
