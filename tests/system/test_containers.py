"""The container files, checked without a container engine: the Dockerfile by hadolint and by
its shape, its HEALTHCHECK command run for real, the build context, docker-compose.yml against
the compose specification, and config/nginx.conf for what SSE needs (nginx -t on it as well;
tests/system/test_deploy.py runs it)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from tests.support.factories import StartService
from tests.support.paths import ROOT, venv_tool
from tests.support.servers import NGINX_CONF, Nginx, free_port

DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"


# -- Dockerfile -------------------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [venv_tool("hadolint"), "--no-color", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings = orjson.loads(result.stdout or "[]")
    assert findings == [], result.stdout
    assert result.returncode == 0, result.stderr


def test_dockerfile_layers_user_entrypoint_and_signals() -> None:
    steps = instructions()
    keywords = [k for k, _ in steps]
    args = dict(steps)  # the last of each
    assert re.fullmatch(r"python:3\.(1[1-9])-slim(-\w+)?", steps[0][1]), steps[0]

    def index(keyword: str, pattern: str) -> int:
        for i, (k, a) in enumerate(steps):
            if k == keyword and re.search(pattern, a):
                return i
        raise AssertionError(f"no {keyword} matching {pattern!r}")

    # Dependencies from the metadata alone, then the code: a code change keeps the deps layer.
    deps_copied = index("COPY", r"setup\.cfg")
    deps_installed = index("RUN", r"pip install .*-r ")
    code_copied = index("COPY", r"\bservice\b")
    assert deps_copied < deps_installed < code_copied < index("RUN", r"pip install .*--no-deps")
    assert "service" not in steps[deps_copied][1]

    user = args["USER"].split(":")[0]
    assert user.isdigit(), "a numeric user: the engine can check it is not root"
    assert int(user) != 0
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    assert orjson.loads(args["ENTRYPOINT"]) == ["roomlogs", "serve"], "exec form"
    assert args["STOPSIGNAL"] == "SIGTERM"
    assert args["EXPOSE"] == "8080"
    env = " ".join(a for k, a in steps if k == "ENV")
    for variable in ("PORT=8080", "WORKERS=", "SHUTDOWN_TIMEOUT=", "LISTEN_HOST=0.0.0.0"):
        assert variable in env
    assert "/healthz" in args["HEALTHCHECK"]
    assert "curl" not in args["HEALTHCHECK"]  # not in the slim image


def healthcheck_command() -> list[str]:
    options = dict(instructions())["HEALTHCHECK"]
    command: list[str] = orjson.loads(options.split(" CMD ", 1)[1])
    assert command[0] == "python"
    return [sys.executable, *command[1:]]


@pytest.mark.process  # it starts the service: a process-level test among the file checks
async def test_dockerfile_healthcheck_command_asks_healthz(service: StartService) -> None:
    srv = await service()
    command = healthcheck_command()

    def run(port: int) -> int:
        env = {**os.environ, "PORT": str(port)}
        return subprocess.run(command, env=env, capture_output=True, timeout=10).returncode

    assert await asyncio.to_thread(run, srv.port) == 0
    assert await asyncio.to_thread(run, free_port()) != 0  # nothing listens: unhealthy


def _glob(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regular expression."""
    out = ""
    for part in re.split(r"(\*\*/?|\*|\?)", pattern.strip("/")):
        if part in ("**", "**/"):
            out += "(?:.*/)?" if part == "**/" else ".*"
        elif part == "*":
            out += "[^/]*"
        elif part == "?":
            out += "[^/]"
        else:
            out += re.escape(part)
    return re.compile(out)


def in_build_context(path: str, rules: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for rule in rules:
        negated = rule.startswith("!")
        regex = _glob(rule.removeprefix("!"))
        if any(regex.fullmatch(p) for p in prefixes):
            included = negated
    return included


def test_dockerignore_sends_only_what_the_image_copies() -> None:
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in (
        "setup.cfg",
        "pyproject.toml",
        "README.md",
        "service/app.py",
        "service/static/index.html",
        "clients/js/stream.js",  # service/static/stream.js links to it
    ):
        assert in_build_context(path, rules), path
    for path in (
        ".git/HEAD",
        ".venv/bin/python",
        "tests/system/test_deploy.py",
        "service/__pycache__/app.cpython-312.pyc",
        "bench/fanout.py",
        "clients/js/package.json",
        "clients/js/node_modules/eventsource/package.json",
        "docker-compose.yml",
        ".env",
    ):
        assert not in_build_context(path, rules), path


# -- docker-compose.yml -----------------------------------------------------------------------


def test_compose_file_follows_the_compose_specification() -> None:
    result = subprocess.run(
        [
            venv_tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(COMPOSE),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_replicas_behind_nginx_with_healthchecks() -> None:
    compose: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"redis", "gateway", "nginx"}
    gateway, nginx = services["gateway"], services["nginx"]

    assert gateway["deploy"]["replicas"] >= 2
    assert "ports" not in gateway, "replicas cannot share a host port"
    assert "container_name" not in gateway, "replicas cannot share a name"
    env = gateway["environment"]
    assert env["REDIS_URL"].startswith("redis://redis:")
    assert re.fullmatch(r"\$\{JWT_SECRET:-.{32,}\}", env["JWT_SECRET"]), "dev default only"
    assert gateway["depends_on"]["redis"]["condition"] == "service_healthy"
    # The engine must not SIGKILL a gateway in the middle of its drain.
    grace = int(gateway["stop_grace_period"].removesuffix("s"))
    assert gateway["stop_signal"] == "SIGTERM"
    assert grace > float(env["SHUTDOWN_TIMEOUT"])

    assert "./config/nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    # config/nginx.conf's `certs/tls.crt` is relative to its own directory; scripts/dev-cert
    # writes config/certs/ by default, and git ignores it.
    assert "./config/certs:/etc/nginx/certs:ro" in nginx["volumes"]
    assert "config/certs/" in (ROOT / ".gitignore").read_text().splitlines()
    assert nginx["depends_on"]["gateway"]["condition"] == "service_healthy"
    assert any(p.endswith(":8080") for p in nginx["ports"])
    assert any(p.endswith(":8443") for p in nginx["ports"])
    for name, svc in services.items():
        assert svc["healthcheck"]["test"], f"{name} has no healthcheck"
    assert "/healthz" in " ".join(gateway["healthcheck"]["test"])


# -- config/nginx.conf ------------------------------------------------------------------------


def _conf() -> str:
    """config/nginx.conf without its comments."""
    return "\n".join(line.split("#", 1)[0] for line in NGINX_CONF.read_text().splitlines())


def _block(text: str, header: str) -> str:
    """The body of the `header { … }` block."""
    start = text.index(header)
    start = text.index("{", start) + 1
    depth = 1
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i]
    raise AssertionError(f"unclosed block {header!r}")


def _directives(block: str) -> set[str]:
    return {" ".join(d.split()) for d in block.split(";")}


def test_nginx_conf_streams_sse_unbuffered_and_fails_over() -> None:
    conf = _conf()
    server = _directives(_block(conf, "server {"))
    # One location for both streams: the one-room route and /api/v1/logs?rooms=.
    stream_header = "location ~ ^/api/v1/(rooms/[^/]+/)?logs$"
    stream = _directives(_block(conf, stream_header))
    pattern = re.compile(stream_header.split(" ")[2])
    assert pattern.fullmatch("/api/v1/rooms/demo/logs")
    assert pattern.fullmatch("/api/v1/logs")
    assert not pattern.fullmatch("/api/v1/rooms/demo/logs/history")
    upstream = _block(conf, "upstream gateway")
    for directive in (
        "proxy_buffering off",
        "proxy_cache off",
        "gzip off",
        "proxy_read_timeout 1h",
    ):
        assert directive in stream, directive
    for directive in (
        "proxy_http_version 1.1",
        'proxy_set_header Connection ""',
        "proxy_set_header X-Request-Id $roomlogs_request_id",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for",
        "proxy_next_upstream error timeout http_502 http_503",
    ):
        assert directive in server, directive
    assert re.search(r"server gateway:8080 resolve max_fails=\d+ fail_timeout=\d+s", upstream)
    assert re.search(r"\bkeepalive \d+;", upstream)


def test_nginx_conf_serves_tls_and_http2_and_plain_http() -> None:
    """Browsers get TLS and HTTP/2 (no 6-connection cap); plain HTTP stays; the gateways
    still get HTTP/1.1 from the one server block both listeners share."""
    conf = _conf()
    assert conf.count("server {") == 1
    server = _directives(_block(conf, "server {"))
    assert "listen 8080" in server
    # Debian's nginx 1.22 has no `http2 on;` (1.25.1+): the listen parameter works in both.
    assert "listen 8443 ssl http2" in server
    assert "ssl_certificate certs/tls.crt" in server
    assert "ssl_certificate_key certs/tls.key" in server
    assert "ssl_protocols TLSv1.2 TLSv1.3" in server
    assert "proxy_http_version 1.1" in server


def test_nginx_conf_room_affinity_is_one_commented_line() -> None:
    """The option of docs/nginx.md: off as shipped, one `hash … consistent` on the room."""
    text = NGINX_CONF.read_text()
    assert "hash " not in _conf(), "affinity is off as shipped"
    commented = [line for line in text.splitlines() if line.strip().endswith("# @affinity")]
    assert [line.split("#")[1].strip() for line in commented] == ["hash $roomlogs_room consistent;"]
    upstream = _block(text, "upstream gateway")
    assert upstream.index("# @affinity") < upstream.index("keepalive "), "hash before keepalive"
    room_map = _block(_conf(), "map $uri $roomlogs_room")
    assert "$arg_rooms" in room_map


def test_nginx_conf_never_logs_the_query_string() -> None:
    conf = _conf()
    log_format = re.search(r"log_format roomlogs[^;]*;", conf)
    assert log_format is not None
    logged = set(re.findall(r"\$\w+", log_format.group(0)))
    # The query string, whole or in part, and headers that may carry a token or a URL with one.
    leaky = {"$request", "$request_uri", "$args", "$query_string", "$is_args", "$http_referer"}
    leaky |= {"$http_authorization", "$http_cookie", "$request_body"}
    assert not logged & leaky, logged & leaky
    assert not {v for v in logged if v.startswith(("$arg_", "$cookie_"))}
    assert re.search(r"access_log \S+ roomlogs;", conf), "every access log uses that format"
    assert len(re.findall(r"access_log ", conf)) == 2  # that one, and `off` for nginx's health
    # nginx puts the request line, query included, into error messages below `crit`.
    assert re.search(r"^error_log \S+ crit;", conf, re.MULTILINE)


def test_nginx_accepts_the_rendered_conf(tmp_path: Path) -> None:
    """Debian's nginx (1.22) reads it, TLS listener and scripts/dev-cert's certificate included
    (tests/system/test_nginx_http2.py runs it, with the room affinity on as well)."""
    nginx = Nginx(tmp_path, [free_port(), free_port()])
    assert f"listen 127.0.0.1:{nginx.tls_port} ssl http2;" in nginx.conf.read_text()
    result = nginx.check()
    assert result.returncode == 0, result.stderr
