"""What tests make and pass around: tokens, settings, logs, decoded messages, and the types of
the fixtures that make clients and processes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web
from aiohttp.test_utils import TestClient

from service.auth import mint_token
from service.message import Message, message_from_log
from service.settings import Settings
from tests.support.servers import ServiceProcess

SECRET: Final = "test-secret-that-is-long-enough-for-hs256"
MS: Final = 1_700_000_000_000  # the millisecond part of `message()`'s stream ids

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]  # pytest-aiohttp's `aiohttp_client`
MakeClient = Callable[..., Awaitable[Client]]  # the `make_client` fixture
StartService = Callable[..., Awaitable[ServiceProcess]]  # the `service` fixture


# -- tokens and settings --------------------------------------------------------------------------


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


# -- logs -----------------------------------------------------------------------------------------


def sample_log(i: int, **extra: Any) -> dict[str, Any]:
    """A log in the original NestJS format."""
    return {
        "timestamp": f"2026-01-01T00:00:{i % 60:02d}.000Z",
        "agentType": "story",
        "level": "info",
        "message": f"log {i}",
        "metadata": {"step": i},
        **extra,
    }


def log_with(**fields: Any) -> dict[str, Any]:
    """A valid log with some fields replaced; a value of `...` removes the field."""
    log = sample_log(1)
    for name, value in fields.items():
        if value is ...:
            log.pop(name, None)
        else:
            log[name] = value
    return log


def message(
    room: str, seq: int | None, *, level: str = "info", agent: str = "story", ms: int = MS
) -> Message:
    """A decoded log of `room` with stream id `<ms>-<seq>` (no id when `seq` is None)."""
    log: dict[str, Any] = {
        "timestamp": "2026-01-01T00:00:00.000Z",
        "agentType": agent,
        "level": level,
        "message": f"log {seq}",
        "metadata": {},
    }
    return message_from_log(room, None if seq is None else f"{ms}-{seq}", log, None, None)


async def publish_logs(client: Client, room: str, start: int, count: int) -> list[str]:
    """`count` single-log POSTs to `room` (`sample_log(start)`, …), one after another: the
    ids the gateway answered, in order."""
    ids: list[str] = []
    for i in range(start, start + count):
        r = await client.post(f"/api/v1/rooms/{room}/logs", json=sample_log(i), headers=auth())
        assert r.status == 202, await r.text()
        ids.extend((await r.json())["ids"])
    return ids


def ids_in_order(ids: list[str]) -> bool:
    """Stream ids strictly increasing: stored in this order, none twice."""
    keys = [tuple(int(part) for part in i.split("-")) for i in ids]
    return keys == sorted(keys) and len(set(keys)) == len(keys)
