"""Fixtures only (and the hook that marks the tiers); the helpers live in `tests.support`."""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from service.app import create_app
from service.state import STATE
from tests.support.cluster import cluster  # noqa: F401 - the fixture: a cluster per test module
from tests.support.factories import (
    SECRET,
    Client,
    ClientFactory,
    MakeClient,
    StartService,
    settings,
)
from tests.support.servers import RedisServer, ServiceProcess

# A server started without a key keeps its development secret in the user's state directory:
# never the real one from the tests (child processes inherit this).
os.environ.setdefault("ROOMLOGS_STATE_DIR", tempfile.mkdtemp(prefix="roomlogs-test-state-"))

TESTS = Path(__file__).resolve().parent
# The tiers that start processes: `-m "not process and not system"` is the fast inner loop.
TIER_MARKERS = {TESTS / "process": pytest.mark.process, TESTS / "system": pytest.mark.system}

_rooms = itertools.count()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test by its tier's directory (a test elsewhere is marked where it is)."""
    for item in items:
        for directory, marker in TIER_MARKERS.items():
            if item.path.is_relative_to(directory):
                item.add_marker(marker)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private redis-server for the session; tests keep apart by unique room ids."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server for one test, which it may kill and restart."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def room() -> str:
    return f"test-room-{os.getpid()}-{next(_rooms)}"


@pytest.fixture(params=["memory", "redis"])
def broker_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def make_client(aiohttp_client: ClientFactory, redis_server: RedisServer) -> MakeClient:
    """An in-process app on pytest-aiohttp's test server; `redis=True` wires the private Redis."""

    async def make(*, redis: bool = False, **kw: Any) -> Client:
        if redis:
            kw.setdefault("redis_url", redis_server.url)
        client = await aiohttp_client(create_app(settings(**kw)))
        async with asyncio.timeout(10):
            await client.app[STATE].broker.wait_live()
        return client

    return make


@pytest.fixture
async def service(
    tmp_path: Path,
) -> AsyncIterator[StartService]:
    """Start `python -m service serve` processes; all are stopped by PID at the end."""
    started: list[ServiceProcess] = []

    async def start(**env: str) -> ServiceProcess:
        proc = ServiceProcess(env={"JWT_SECRET": SECRET, **env})
        proc.start(tmp_path / f"service-{len(started)}.log")
        started.append(proc)
        await proc.wait_healthy()
        return proc

    yield start
    for proc in started:
        proc.stop()
