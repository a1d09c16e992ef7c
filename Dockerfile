# roomlogs: the SSE gateway as a container image.
#   docker build -t roomlogs .
#   docker run -p 8080:8080 -e REDIS_URL=redis://redis:6379/0 -e JWT_SECRET=… roomlogs
# Every setting of DESIGN.md is an environment variable; `docker run roomlogs --help` lists the
# `serve` flags. Checked by hadolint in tests/system/test_containers.py.
FROM python:3.12-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv \
    && groupadd --system --gid 10001 roomlogs \
    && useradd --system --uid 10001 --gid roomlogs --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin roomlogs

WORKDIR /src

# Dependencies first, from setup.cfg alone (install_requires plus the `speed` extra: uvloop), so
# a change to the code does not rebuild this layer. Every one of them ships wheels: no compiler.
COPY setup.cfg pyproject.toml ./
RUN python -c "import configparser; c = configparser.ConfigParser(); c.read('setup.cfg'); \
print(c['options']['install_requires'] + c['options.extras_require']['speed'])" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the code (README.md is the package's long description).
COPY README.md ./
# The viewer's service/static/stream.js is a symlink to the JS package's file (one RoomStream).
COPY clients/js/stream.js ./clients/js/stream.js
COPY service ./service
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf /src/build /src/*.egg-info

WORKDIR /
USER 10001:10001

# Defaults for a container; override any of them (DESIGN.md, "Configuration"). WORKERS > 1
# needs REDIS_URL: the workers share the port through SO_REUSEPORT, one per core is the rule.
ENV LISTEN_HOST=0.0.0.0 \
    PORT=8080 \
    WORKERS=1 \
    SHUTDOWN_TIMEOUT=10 \
    LOG_FORMAT=json \
    LOG_LEVEL=INFO
EXPOSE 8080

# Liveness (/healthz), with the standard library: the slim image has no curl. Readiness
# (/readyz: broker live, not draining) is for the load balancer or orchestrator to ask.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8080') + '/healthz', timeout=2)"]

# SIGTERM drains: /readyz 503 at once, open streams closed in waves over SHUTDOWN_TIMEOUT.
# Give the container a stop timeout longer than SHUTDOWN_TIMEOUT (docker-compose.yml does).
STOPSIGNAL SIGTERM
ENTRYPOINT ["roomlogs", "serve"]
