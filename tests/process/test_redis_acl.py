"""The least-privilege ACL of docs/redis.md, applied as written there to a real redis-server
whose default user is disabled: the gateway works end to end with exactly those permissions
(and Redis refused it nothing: `ACL LOG` stays empty), a plain-`PUBLISH` backend needs only
`+publish` on the channels, and a gateway allowed less says what Redis refused."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import redis

from tests.support.factories import StartService, auth, sample_log
from tests.support.paths import ROOT
from tests.support.roundtrip import (
    readiness,
    stream_publish_history,
    unready_service,
    wait_unready,
)
from tests.support.servers import RedisServer
from tests.support.sse import SSEStream

ADMIN = ("--user", "admin", "--pass", "admin-pw", "--no-auth-warning")


def documented_acl(user: str) -> list[str]:
    """The `ACL SETUSER <user> …` line of docs/redis.md, as arguments for redis-cli."""
    text = (ROOT / "docs" / "redis.md").read_text()
    [line] = re.findall(rf"^ACL SETUSER {user} .*$", text, flags=re.MULTILINE)
    return shlex.split(line)


@pytest.fixture
def acl_redis() -> Iterator[RedisServer]:
    """Users from docs/redis.md, an admin for the test, and the default user off."""
    server = RedisServer()
    server.start()
    server.cli("ACL", "SETUSER", "admin", "on", ">admin-pw", "~*", "&*", "+@all")
    gateway = documented_acl("roomlogs-gateway")
    backend = documented_acl("roomlogs-backend")
    server.cli(*[">gw-pw" if a == ">GATEWAY_PASSWORD" else a for a in gateway])
    server.cli(*[">be-pw" if a == ">BACKEND_PASSWORD" else a for a in backend])
    server.cli("ACL", "SETUSER", "default", "off")
    assert "NOAUTH" in server.cli("GET", "x") or "NOPERM" in server.cli("GET", "x")
    yield server
    server.stop()


def gateway_url(server: RedisServer, user: str = "roomlogs-gateway", pw: str = "gw-pw") -> str:
    return f"redis://{user}:{pw}@127.0.0.1:{server.port}/0"


async def test_the_documented_acl_is_enough_end_to_end(
    service: StartService, acl_redis: RedisServer, room: str
) -> None:
    acl_redis.cli(*ADMIN, "SET", f"room:{room}", "1")  # the app backend's room, for ROOM_CHECK
    srv = await service(REDIS_URL=gateway_url(acl_redis), ROOM_CHECK="redis")
    # A stream, a POST received live by id, the history (XRANGE).
    [first] = await stream_publish_history(srv.url, room)
    url = f"{srv.url}/api/v1/rooms/{room}/logs"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        # A keyed publish (SET/GET of room:R:publish:K), and its replay.
        for replayed in (False, True):
            headers = {**auth(), "Idempotency-Key": "acl-key-1"}
            async with http.post(url, json=sample_log(2), headers=headers) as r:
                assert r.status == 202, await r.text()
                assert (await r.json()).get("replayed", False) is replayed
        # history=N (XREVRANGE), then a plain PUBLISH by the backend user, stored and delivered.
        async with http.get(url, params={"history": "1"}, headers=auth()) as resp:
            stream = SSEStream(resp)
            assert (await stream.next()).event == "connected"
            [last] = await stream.collect(1)
            assert last.json()["message"] == "log 2"
            backend = ("--user", "roomlogs-backend", "--pass", "be-pw", "--no-auth-warning")
            payload = '{"agentType":"code","level":"warn","message":"plain"}'
            assert acl_redis.cli(*backend, "PUBLISH", f"room:{room}:logs", payload).strip() == "1"
            [plain] = await stream.collect(1)
            assert plain.json()["message"] == "plain"
            assert plain.id is not None
        # A resume from the first log (XINFO STREAM, XRANGE) gets the other two.
        headers = {**auth(), "Last-Event-ID": first["id"]}
        async with http.get(url, headers=headers) as resp:
            connected = await SSEStream(resp).next()
            assert connected.json()["recovered"] is True
        async with http.get(url + "/history", headers=auth()) as r:
            logs = (await r.json())["logs"]
    assert [log["message"] for log in logs] == ["log 1", "log 2", "plain"]
    assert logs[2]["id"] == plain.id
    # Nothing the gateway (or redis-py on its behalf) sent was refused: but for redis-py's
    # CLIENT SETINFO on a Redis 7.2+, which docs/redis.md tells to allow there.
    with redis.Redis(port=acl_redis.port, username="admin", password="admin-pw") as admin:
        refusals = [entry for entry in admin.acl_log() if entry["object"] != "client|setinfo"]
    assert refusals == []
    # The backend user may publish and nothing else: not the envelope secret.
    refused = acl_redis.cli(*backend, "GET", "roomlogs:envelope-secret")
    assert "NOPERM" in refused


async def test_without_the_secret_key_readiness_names_it(
    tmp_path: Path, acl_redis: RedisServer
) -> None:
    acl_redis.cli(*ADMIN, "ACL", "SETUSER", "roomlogs-gateway", "resetkeys", "~room:*")
    async with unready_service(tmp_path / "gw.log", REDIS_URL=gateway_url(acl_redis)) as srv:
        reason = await wait_unready(srv.url, "no permissions")
        assert "roomlogs:envelope-secret" in reason
        # redis-py names a pipeline's command with its arguments, here the secret it tried
        # to set: neither readiness nor the log repeats them.
        leaked = re.compile(r"envelope-secret [0-9a-f]{32}")
        assert not leaked.search(reason)
        assert not leaked.search(srv.output())
        assert "docs/redis.md" in reason
        assert "redis refused" in srv.output()
        assert "Traceback" not in srv.output()


async def test_without_xadd_a_publish_is_refused_saying_so(
    service: StartService, acl_redis: RedisServer, room: str
) -> None:
    acl_redis.cli(*ADMIN, "ACL", "SETUSER", "roomlogs-gateway", "-xadd")
    srv = await service(REDIS_URL=gateway_url(acl_redis))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        url = f"{srv.url}/api/v1/rooms/{room}/logs"
        async with http.post(url, json=sample_log(1), headers=auth()) as r:
            assert r.status == 503
            body = await r.json()
    assert body["error"] == "broker_unavailable"
    # Redis' own refusal does not say which command: the gateway asks Redis which it may not.
    assert f"this Redis user may not run XADD room:{room}:history (" in body["detail"]
    assert "docs/redis.md" in body["detail"]


async def test_refused_after_its_xadd_a_publish_is_of_unknown_outcome_not_unstored(
    service: StartService, acl_redis: RedisServer, room: str
) -> None:
    """Redis does not roll a script back: without `publish`, the XADD before it stayed. The
    answer must not say "not stored" (it was): 504, retry with a key."""
    acl_redis.cli(*ADMIN, "ACL", "SETUSER", "roomlogs-gateway", "-publish")
    srv = await service(REDIS_URL=gateway_url(acl_redis))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        url = f"{srv.url}/api/v1/rooms/{room}/logs"
        async with http.post(url, json=sample_log(1), headers=auth()) as r:
            assert r.status == 504
            body = await r.json()
    assert body["error"] == "publish_outcome_unknown"
    assert "PUBLISH" in body["detail"]
    assert acl_redis.cli(*ADMIN, "XLEN", f"room:{room}:history").strip() == "1"


async def test_a_wrong_password_is_unready_saying_so(
    tmp_path: Path, acl_redis: RedisServer
) -> None:
    url = gateway_url(acl_redis, pw="wrong")
    async with unready_service(tmp_path / "gw.log", REDIS_URL=url) as srv:
        await wait_unready(srv.url, "invalid username-password pair")
        status, _ = await readiness(srv.url)
        assert status == 503
