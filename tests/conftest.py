from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.auth import mint_token
from service.settings import Settings
from service.state import STATE

from .support import RedisServer, ServiceProcess

SECRET = "test-secret-that-is-long-enough-for-hs256"
_rooms = itertools.count()

ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]
MakeClient = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]
StartService = Callable[..., Awaitable[ServiceProcess]]


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


def token(rooms: Any = "*", publish: Any = "*", ttl: float = 600, **kw: Any) -> str:
    rooms = [rooms] if isinstance(rooms, str) else rooms
    publish = [publish] if isinstance(publish, str) else publish
    return mint_token(SECRET, rooms=rooms, publish=publish, ttl=ttl, **kw)


def auth(tok: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok or token()}"}


def settings(**kw: Any) -> Settings:
    base: dict[str, Any] = {"jwt_secret": SECRET, "heartbeat_interval": 30.0}
    base.update(kw)
    return Settings(**base)


@pytest.fixture(params=["memory", "redis"])
def broker_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def make_client(aiohttp_client: ClientFactory, redis_server: RedisServer) -> MakeClient:
    """An in-process app on pytest-aiohttp's test server; `redis=True` wires the private Redis."""

    async def make(*, redis: bool = False, **kw: Any) -> TestClient[web.Request, web.Application]:
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
