"""Configuration: one frozen object built once from the environment (and `serve` flags).

Every variable of DESIGN.md is described once in `FIELDS`; the CLI builds its flags from the
same table, so a variable and its flag can never drift apart.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

ALLOWED_ALGORITHMS = frozenset(
    {
        "HS256", "HS384", "HS512",
        "RS256", "RS384", "RS512",
        "PS256", "PS384", "PS512",
        "ES256", "ES384", "ES512",
        "EdDSA",
    }
)  # fmt: skip


class SettingsError(ValueError):
    """A bad configuration value; `str()` is the one line printed before exiting."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"invalid {variable}: {problem}")
        self.variable = variable


@dataclass(frozen=True, slots=True)
class Settings:
    listen_host: str = "0.0.0.0"
    port: int = 8080
    redis_url: str | None = None
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str = "mymaster"
    redis_cluster_nodes: tuple[tuple[str, int], ...] = ()
    subscribe_mode: Literal["pattern", "rooms"] = "pattern"
    unsubscribe_linger: float = 5.0
    plain_keepers: int = 2
    publish_replicas: int = 0
    publish_replicas_timeout_ms: int = 200
    redis_pool_size: int = 64
    redis_pool_timeout: float = 2.0
    redis_tls_ca_file: str | None = None
    redis_tls_cert_file: str | None = None
    redis_tls_key_file: str | None = None
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    jwt_jwks_url: str | None = None
    jwt_algorithms: tuple[str, ...] = ("HS256",)
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway: float = 30.0
    auth_cookie: str = "roomlogs_token"
    heartbeat_interval: float = 30.0
    retry_ms: int = 3000
    history_max: int = 1000
    history_ttl: int = 86400
    idempotency_ttl: int = 600
    subscriber_buffer: int = 1000
    max_connections: int = 10000
    max_message_bytes: int = 65536
    max_rooms_per_stream: int = 64
    cors_origins: tuple[str, ...] = ()
    room_check: Literal["off", "redis"] = "off"
    workers: int = 1
    shutdown_timeout: float = 10.0
    request_head_timeout: float = 10.0
    keepalive_timeout: float = 75.0
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"

    @property
    def ephemeral_secret(self) -> bool:
        """True when no key is configured: the CLI generates a secret and prints a dev token."""
        return not (self.jwt_secret or self.jwt_public_key or self.jwt_jwks_url)

    @property
    def uses_redis(self) -> bool:
        """A Redis broker (one server, Sentinel or Cluster), not the embedded one."""
        return bool(self.redis_url or self.redis_sentinels or self.redis_cluster_nodes)

    @property
    def topology(self) -> Literal["memory", "redis", "sentinel", "cluster"]:
        if self.redis_cluster_nodes:
            return "cluster"
        if self.redis_sentinels:
            return "sentinel"
        return "redis" if self.redis_url else "memory"

    @property
    def redis_options(self) -> dict[str, Any]:
        """redis-py's keyword arguments for the TLS files: every Redis client of the service
        (the broker's pool, its subscription, `roomlogs publish`) is made with them."""
        options: dict[str, Any] = {}
        if self.redis_tls_ca_file:
            options["ssl_ca_certs"] = self.redis_tls_ca_file
        if self.redis_tls_cert_file:
            options["ssl_certfile"] = self.redis_tls_cert_file
            options["ssl_keyfile"] = self.redis_tls_key_file
        return options

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every variable of `FIELDS`; `overrides` (attribute names) win over the environment.

        Raises `SettingsError` naming the first bad variable.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in FIELDS:
            raw = overrides.get(spec.attr)
            if raw is None:
                raw = env.get(spec.env)
            if raw is None or raw == "":
                continue
            try:
                values[spec.attr] = spec.parse(raw) if isinstance(raw, str) else raw
            except (ValueError, OSError) as exc:
                raise SettingsError(spec.env, f"{raw!r}: {exc}") from None
        if "listen_host" not in values and not (
            values.get("jwt_secret") or values.get("jwt_public_key") or values.get("jwt_jwks_url")
        ):
            # No key: the development secret signs tokens that can publish anywhere, and its
            # token is printed; such a server answers this machine only unless told otherwise.
            values["listen_host"] = "127.0.0.1"
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Cross-field rules that no single parser can see."""
        for alg in self.jwt_algorithms:
            if alg not in ALLOWED_ALGORITHMS:
                raise SettingsError(
                    "JWT_ALGORITHMS",
                    f"{alg!r} is not allowed (choose from {', '.join(sorted(ALLOWED_ALGORITHMS))})",
                )
        asymmetric = [a for a in self.jwt_algorithms if not a.startswith("HS")]
        if self.jwt_public_key and self.jwt_jwks_url:
            raise SettingsError("JWT_PUBLIC_KEY", "set JWT_PUBLIC_KEY or JWT_JWKS_URL, not both")
        if (self.jwt_public_key or self.jwt_jwks_url) and not asymmetric:
            raise SettingsError(
                "JWT_ALGORITHMS", "a public key or JWKS URL needs an RS/PS/ES/EdDSA algorithm"
            )
        if asymmetric and not (self.jwt_public_key or self.jwt_jwks_url):
            raise SettingsError(
                "JWT_PUBLIC_KEY", f"{asymmetric[0]} needs JWT_PUBLIC_KEY or JWT_JWKS_URL"
            )
        if self.redis_sentinels and self.redis_cluster_nodes:
            raise SettingsError(
                "REDIS_CLUSTER_NODES", "set REDIS_SENTINELS or REDIS_CLUSTER_NODES, not both"
            )
        if (
            self.redis_url
            and self.redis_url.startswith("unix://")
            and (self.redis_sentinels or self.redis_cluster_nodes)
        ):
            raise SettingsError(
                "REDIS_URL",
                "with REDIS_SENTINELS or REDIS_CLUSTER_NODES it carries only the scheme, "
                "password and db (redis:// or rediss://)",
            )
        if self.publish_replicas and not self.uses_redis:
            raise SettingsError("PUBLISH_REPLICAS", "needs a Redis broker (REDIS_URL, ...)")
        if not self.uses_redis and self.workers > 1:
            raise SettingsError(
                "WORKERS", "the embedded broker serves one process: set REDIS_URL to run workers"
            )
        if self.room_check == "redis" and not self.uses_redis:
            raise SettingsError("ROOM_CHECK", "'redis' needs REDIS_URL")
        self._check_tls()

    def _check_tls(self) -> None:
        """The TLS files load as they will when connecting: a wrong file stops start-up with
        its variable named, not every connection later with an SSL error."""
        tls = {
            "REDIS_TLS_CA_FILE": self.redis_tls_ca_file,
            "REDIS_TLS_CERT_FILE": self.redis_tls_cert_file,
            "REDIS_TLS_KEY_FILE": self.redis_tls_key_file,
        }
        named = next((name for name, value in tls.items() if value), None)
        if named is None:
            return
        if not (self.redis_url or "").startswith("rediss://"):
            raise SettingsError(named, "needs a rediss:// REDIS_URL (TLS)")
        if self.redis_tls_key_file and not self.redis_tls_cert_file:
            raise SettingsError("REDIS_TLS_KEY_FILE", "needs REDIS_TLS_CERT_FILE (its certificate)")
        context = ssl.create_default_context()
        if self.redis_tls_ca_file:
            try:
                context.load_verify_locations(cafile=self.redis_tls_ca_file)
            except (ssl.SSLError, OSError) as exc:
                raise SettingsError(
                    "REDIS_TLS_CA_FILE", f"{self.redis_tls_ca_file!r}: not PEM certificates ({exc})"
                ) from None
        if self.redis_tls_cert_file:
            try:
                context.load_cert_chain(self.redis_tls_cert_file, self.redis_tls_key_file)
            except (ssl.SSLError, OSError) as exc:
                variable = (
                    "REDIS_TLS_KEY_FILE" if self.redis_tls_key_file else "REDIS_TLS_CERT_FILE"
                )
                raise SettingsError(
                    variable,
                    f"the certificate {self.redis_tls_cert_file!r} and key "
                    f"{self.redis_tls_key_file or '(in the same file)'!r} do not load ({exc})",
                ) from None


# -- parsers ------------------------------------------------------------------------------


def _int(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError("expected a whole number") from None
        if not low <= value <= high:
            raise ValueError(f"expected {low}..{high}")
        return value

    return parse


def _float(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("expected a number") from None
        if not low <= value <= high:
            raise ValueError(f"expected {low:g}..{high:g}")
        return value

    return parse


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value

    return parse


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _algorithms(raw: str) -> tuple[str, ...]:
    algs = _csv(raw)
    if not algs:
        raise ValueError("expected at least one algorithm")
    return algs


def _redis_url(raw: str) -> str:
    if not raw.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("expected a redis://, rediss:// or unix:// URL")
    return raw


def _host_ports(raw: str) -> tuple[tuple[str, int], ...]:
    """`host:port,host:port` (an IPv6 host in brackets: `[::1]:26379`)."""
    nodes: list[tuple[str, int]] = []
    for part in _csv(raw):
        host, colon, port = part.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{part!r} is not host:port")
        nodes.append((host, int(port)))
    if not nodes:
        raise ValueError("expected host:port,host:port")
    return tuple(nodes)


def _readable_file(raw: str) -> str:
    """A path that can be read now: a typo is found at start-up."""
    with open(raw, "rb"):
        pass
    return raw


def _url(raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL")
    return raw


def _pem(raw: str) -> str:
    """PEM text itself, or the path of a file that holds it (easier in container secrets)."""
    text = raw if "-----BEGIN" in raw else Path(raw).read_text()
    if "-----BEGIN" not in text:
        raise ValueError("expected a PEM public key or the path of one")
    return text


def _log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


def _nonempty(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw


@dataclass(frozen=True, slots=True)
class FieldSpec:
    env: str
    attr: str
    parse: Callable[[str], Any]
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.attr.replace("_", "-")


FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("LISTEN_HOST", "listen_host", _nonempty, "address to listen on"),
    FieldSpec("PORT", "port", _int(0, 65535), "TCP port"),
    FieldSpec("REDIS_URL", "redis_url", _redis_url, "Redis URL; unset: embedded broker"),
    FieldSpec(
        "REDIS_SENTINELS",
        "redis_sentinels",
        _host_ports,
        "host:port,...: find the primary through Redis Sentinel and follow its failovers",
    ),
    FieldSpec(
        "REDIS_SENTINEL_MASTER", "redis_sentinel_master", _nonempty, "the Sentinel service name"
    ),
    FieldSpec(
        "REDIS_CLUSTER_NODES",
        "redis_cluster_nodes",
        _host_ports,
        "host:port,...: seed nodes of a Redis Cluster (sharded pub/sub per room)",
    ),
    FieldSpec(
        "SUBSCRIBE_MODE",
        "subscribe_mode",
        _choice("pattern", "rooms"),
        "pattern: one PSUBSCRIBE per process; rooms: SUBSCRIBE each room with a local stream",
    ),
    FieldSpec(
        "UNSUBSCRIBE_LINGER",
        "unsubscribe_linger",
        _float(0, 3600),
        "seconds a room stays subscribed after its last local stream (SUBSCRIBE_MODE=rooms)",
    ),
    FieldSpec(
        "PLAIN_KEEPERS",
        "plain_keepers",
        _int(0, 16),
        "SUBSCRIBE_MODE=rooms: gateways that PSUBSCRIBE to store plain PUBLISH logs of rooms "
        "nobody here watches (0: such logs are not stored)",
    ),
    FieldSpec(
        "PUBLISH_REPLICAS",
        "publish_replicas",
        _int(0, 64),
        "replicas that must hold a publish (WAIT) before it is acknowledged",
    ),
    FieldSpec(
        "PUBLISH_REPLICAS_TIMEOUT_MS",
        "publish_replicas_timeout_ms",
        _int(1, 60_000),
        "milliseconds to wait for PUBLISH_REPLICAS; fewer is an unknown outcome (504)",
    ),
    FieldSpec(
        "REDIS_POOL_SIZE", "redis_pool_size", _int(2, 100_000), "Redis connections per process"
    ),
    FieldSpec(
        "REDIS_POOL_TIMEOUT",
        "redis_pool_timeout",
        _float(0, 60),
        "seconds a request waits for a free Redis connection",
    ),
    FieldSpec(
        "REDIS_TLS_CA_FILE",
        "redis_tls_ca_file",
        _readable_file,
        "PEM CA certificate(s) that signed Redis' certificate (rediss://); unset: the system's",
    ),
    FieldSpec(
        "REDIS_TLS_CERT_FILE",
        "redis_tls_cert_file",
        _readable_file,
        "PEM client certificate for Redis (tls-auth-clients)",
    ),
    FieldSpec(
        "REDIS_TLS_KEY_FILE",
        "redis_tls_key_file",
        _readable_file,
        "PEM key of REDIS_TLS_CERT_FILE; unset: in that file",
    ),
    FieldSpec("JWT_SECRET", "jwt_secret", _nonempty, "HS* shared secret"),
    FieldSpec("JWT_PUBLIC_KEY", "jwt_public_key", _pem, "PEM public key (text or path)"),
    FieldSpec("JWT_JWKS_URL", "jwt_jwks_url", _url, "JWKS URL"),
    FieldSpec("JWT_ALGORITHMS", "jwt_algorithms", _algorithms, "comma-separated allowlist"),
    FieldSpec("JWT_ISSUER", "jwt_issuer", _nonempty, "required iss claim"),
    FieldSpec("JWT_AUDIENCE", "jwt_audience", _nonempty, "required aud claim"),
    FieldSpec("JWT_LEEWAY", "jwt_leeway", _float(0, 3600), "clock skew allowed, seconds"),
    FieldSpec("AUTH_COOKIE", "auth_cookie", _nonempty, "cookie read for the token"),
    FieldSpec("HEARTBEAT_INTERVAL", "heartbeat_interval", _float(0.05, 3600), "seconds"),
    FieldSpec("RETRY_MS", "retry_ms", _int(0, 3_600_000), "retry: hint, milliseconds"),
    FieldSpec("HISTORY_MAX", "history_max", _int(1, 1_000_000), "logs kept per room"),
    FieldSpec("HISTORY_TTL", "history_ttl", _int(1, 365 * 86400), "seconds kept after a publish"),
    FieldSpec(
        "IDEMPOTENCY_TTL", "idempotency_ttl", _int(1, 7 * 86400), "seconds a publish key is kept"
    ),
    FieldSpec("SUBSCRIBER_BUFFER", "subscriber_buffer", _int(1, 1_000_000), "frames per stream"),
    FieldSpec("MAX_CONNECTIONS", "max_connections", _int(1, 10_000_000), "streams per process"),
    FieldSpec("MAX_MESSAGE_BYTES", "max_message_bytes", _int(256, 16 << 20), "largest log"),
    FieldSpec(
        "MAX_ROOMS_PER_STREAM",
        "max_rooms_per_stream",
        _int(1, 1024),
        "rooms one GET /api/v1/logs?rooms= stream may follow",
    ),
    FieldSpec("CORS_ORIGINS", "cors_origins", _csv, "comma-separated allowed origins"),
    FieldSpec("ROOM_CHECK", "room_check", _choice("off", "redis"), "off or redis"),
    FieldSpec("WORKERS", "workers", _int(1, 256), "worker processes"),
    FieldSpec("SHUTDOWN_TIMEOUT", "shutdown_timeout", _float(0, 3600), "drain seconds"),
    FieldSpec(
        "REQUEST_HEAD_TIMEOUT",
        "request_head_timeout",
        _float(0.1, 3600),
        "seconds a client has to send a whole request head",
    ),
    FieldSpec(
        "KEEPALIVE_TIMEOUT",
        "keepalive_timeout",
        _float(0.1, 86400),
        "seconds an idle kept-alive connection stays open",
    ),
    FieldSpec("LOG_FORMAT", "log_format", _choice("text", "json"), "text or json"),
    FieldSpec("LOG_LEVEL", "log_level", _log_level, "DEBUG, INFO, WARNING, ERROR"),
)

assert {f.attr for f in FIELDS} == {f.name for f in fields(Settings)}
