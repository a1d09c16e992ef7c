"""DESIGN.md's error table, one bad input at a time: status, JSON body and headers.

Every refusal is `{"error": code, "detail": text}`; 401 carries `WWW-Authenticate`, 503 carries
`Retry-After`. A bad room id is refused before any Redis key is built, which the MONITOR test
checks against a real redis-server.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import time
import uuid
import warnings
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import jwt
import orjson
import pytest
from aiohttp import ClientResponse

from service.state import STATE
from tests.support.factories import SECRET, Client, MakeClient, auth, log_with, sample_log, token
from tests.support.servers import RedisServer
from tests.support.sse import SSEStream

STREAM, PUBLISH, HISTORY = "stream", "publish", "history"
ROUTES = (STREAM, PUBLISH, HISTORY)

BAD_ROOM_IDS = {
    "colon": "bad:room",
    "leading-dash": "-leading",
    "leading-dot": ".leading",
    "leading-underscore": "_leading",
    "129-chars": "a" * 129,
    "space": "a b",
    "newline": "abc\n",
    "slash": "a/b",
    "star": "room*",
    "unicode": "caf\u00e9",
    "cjk": "\u623f\u95f4",
    "emoji": "room\U0001f600",
}


def path(room: str, route: str) -> str:
    """The route's path with the room id percent-encoded the way a browser sends it."""
    suffix = "/history" if route == HISTORY else ""
    return f"/api/v1/rooms/{quote(room, safe='')}/logs{suffix}"


@contextlib.asynccontextmanager
async def request(
    client: Client,
    route: str,
    room: str,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    body: Any = None,
    data: bytes | None = None,
) -> AsyncIterator[ClientResponse]:
    """One request to a room route; a publish sends one valid log unless told otherwise."""
    method = "POST" if route == PUBLISH else "GET"
    kw: dict[str, Any] = {"headers": auth() if headers is None else headers, "params": params}
    if route == PUBLISH:
        kw["data"] = data if data is not None else orjson.dumps(body or sample_log(1))
    async with client.request(method, path(room, route), **kw) as resp:
        yield resp


async def expect_error(resp: ClientResponse, status: int, code: str) -> str:
    """Assert the status and the JSON error body; returns its detail."""
    if resp.status != status:
        # A stream that was served never ends: show its first bytes only.
        head = await asyncio.wait_for(resp.content.read(500), timeout=5)
        raise AssertionError(f"status {resp.status}, not {status}: {head!r}")
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert set(body) == {"error", "detail"}
    assert body["error"] == code
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return str(body["detail"])


async def broker_live(client: Client) -> None:
    """Wait (event-driven, bounded) until the broker's subscription is up."""
    await asyncio.wait_for(client.app[STATE].broker.wait_live(), timeout=10)


# -- 400: room ids ---------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("bad", BAD_ROOM_IDS.values(), ids=BAD_ROOM_IDS.keys())
async def test_bad_room_id_is_400(make_client: MakeClient, route: str, bad: str) -> None:
    client = await make_client()
    async with request(client, route, bad) as resp:
        detail = await expect_error(resp, 400, "invalid_room_id")
    assert "128" in detail


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("bad", ["bad:room", "a" * 129])
async def test_bad_room_id_is_400_before_the_token_is_checked(
    make_client: MakeClient, route: str, bad: str
) -> None:
    client = await make_client()
    async with request(client, route, bad, headers={}) as resp:
        await expect_error(resp, 400, "invalid_room_id")


@pytest.mark.parametrize(
    "good", ["a", "7", "a" * 128, "550e8400-e29b-41d4-a716-446655440000", "A.b_c-1"]
)
async def test_edge_of_valid_room_ids_is_accepted(make_client: MakeClient, good: str) -> None:
    client = await make_client()
    async with request(client, HISTORY, good) as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["roomId"] == good


# -- 400: the publish body -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b"{", b'{"agentType": "story",}', b"\xff\xfe", b"[1, 2"],
    ids=["empty", "text", "truncated", "trailing-comma", "not-utf8", "open-array"],
)
async def test_publish_body_that_is_not_json_is_400(
    make_client: MakeClient, room: str, data: bytes
) -> None:
    client = await make_client()
    async with request(client, PUBLISH, room, data=data) as resp:
        await expect_error(resp, 400, "invalid_json")


BAD_LOGS: dict[str, tuple[Any, str]] = {
    "string": ("just a string", "log"),
    "number": (42, "log"),
    "null": (None, "log"),
    "agentType-missing": (log_with(agentType=...), "agentType"),
    "agentType-empty": (log_with(agentType=""), "agentType"),
    "agentType-number": (log_with(agentType=5), "agentType"),
    "agentType-too-long": (log_with(agentType="a" * 129), "agentType"),
    "level-missing": (log_with(level=...), "level"),
    "level-unknown": (log_with(level="verbose"), "level"),
    "level-uppercase": (log_with(level="INFO"), "level"),
    "level-number": (log_with(level=1), "level"),
    "message-missing": (log_with(message=...), "message"),
    "message-number": (log_with(message=5), "message"),
    "message-null": (log_with(message=None), "message"),
    "message-object": (log_with(message={"text": "x"}), "message"),
    "metadata-string": (log_with(metadata="x"), "metadata"),
    "metadata-array": (log_with(metadata=[1]), "metadata"),
    "metadata-number": (log_with(metadata=5), "metadata"),
    "timestamp-words": (log_with(timestamp="yesterday"), "timestamp"),
    "timestamp-empty": (log_with(timestamp=""), "timestamp"),
    "timestamp-number": (log_with(timestamp=1700000000), "timestamp"),
    "timestamp-bad-date": (log_with(timestamp="2026-13-45T00:00:00Z"), "timestamp"),
    "id-given": (log_with(id="1-0"), "id"),
}


@pytest.mark.parametrize(
    ("body", "field"), BAD_LOGS.values(), ids=[f"single-{k}" for k in BAD_LOGS]
)
async def test_publish_invalid_log_is_400_naming_the_field(
    make_client: MakeClient, room: str, body: Any, field: str
) -> None:
    client = await make_client()
    async with request(client, PUBLISH, room, data=orjson.dumps(body)) as resp:
        detail = await expect_error(resp, 400, "invalid_log")
    assert detail.startswith(field)


@pytest.mark.parametrize(("body", "field"), BAD_LOGS.values(), ids=[f"batch-{k}" for k in BAD_LOGS])
async def test_publish_invalid_log_in_a_batch_is_400_naming_index_and_field(
    make_client: MakeClient, room: str, body: Any, field: str
) -> None:
    client = await make_client()
    batch = [sample_log(0), body]
    async with request(client, PUBLISH, room, data=orjson.dumps(batch)) as resp:
        detail = await expect_error(resp, 400, "invalid_log")
    assert detail.startswith(f"[1].{field}")
    # The valid first log was not stored either: a batch is all or nothing.
    async with request(client, HISTORY, room) as resp:
        assert (await resp.json())["logs"] == []


async def test_publish_empty_array_is_400(make_client: MakeClient, room: str) -> None:
    client = await make_client()
    async with request(client, PUBLISH, room, data=b"[]") as resp:
        await expect_error(resp, 400, "invalid_body")


async def test_publish_more_than_100_logs_is_400(make_client: MakeClient, room: str) -> None:
    client = await make_client()
    batch = [sample_log(i) for i in range(101)]
    async with request(client, PUBLISH, room, data=orjson.dumps(batch)) as resp:
        detail = await expect_error(resp, 400, "too_many_logs")
    assert "100" in detail
    async with request(client, HISTORY, room) as resp:
        assert (await resp.json())["logs"] == []


async def test_publish_exactly_100_logs_is_accepted(make_client: MakeClient, room: str) -> None:
    client = await make_client()
    batch = [sample_log(i) for i in range(100)]
    async with request(client, PUBLISH, room, data=orjson.dumps(batch)) as resp:
        assert resp.status == 202, await resp.text()
        assert len((await resp.json())["ids"]) == 100


# -- 400: query parameters and Last-Event-ID -------------------------------------------------------

BAD_STREAM_IDS = [
    "abc", "123", "1-2-3", "-1-0", "1-", "1.5-0", "0x10-0", "1 - 0",
    "\u0661\u0662-\u0660",  # Arabic-Indic digits: int() reads them, Redis does not
    "\uff11-0",  # a fullwidth digit
]  # fmt: skip


@pytest.mark.parametrize("bad", BAD_STREAM_IDS)
async def test_stream_bad_last_event_id_header_is_400(
    make_client: MakeClient, room: str, bad: str
) -> None:
    client = await make_client()
    async with request(client, STREAM, room, headers={**auth(), "Last-Event-ID": bad}) as resp:
        await expect_error(resp, 400, "invalid_last_event_id")


@pytest.mark.parametrize("bad", BAD_STREAM_IDS)
async def test_stream_bad_last_event_id_query_is_400(
    make_client: MakeClient, room: str, bad: str
) -> None:
    client = await make_client()
    async with request(client, STREAM, room, params={"lastEventId": bad}) as resp:
        await expect_error(resp, 400, "invalid_last_event_id")


@pytest.mark.parametrize("bad", ["abc", "-1", "1.5", "1e3", " ", "ten"])
async def test_stream_bad_history_count_is_400(
    make_client: MakeClient, room: str, bad: str
) -> None:
    client = await make_client()
    async with request(client, STREAM, room, params={"history": bad}) as resp:
        await expect_error(resp, 400, "invalid_history")


@pytest.mark.parametrize("bad", ["verbose", "INFO", "warning", "0", "info,error"])
async def test_stream_bad_level_is_400(make_client: MakeClient, room: str, bad: str) -> None:
    client = await make_client()
    async with request(client, STREAM, room, params={"level": bad}) as resp:
        detail = await expect_error(resp, 400, "invalid_level")
    assert "debug, info, success, warn, error" in detail


@pytest.mark.parametrize("bad", BAD_STREAM_IDS)
async def test_history_bad_after_is_400(make_client: MakeClient, room: str, bad: str) -> None:
    client = await make_client()
    async with request(client, HISTORY, room, params={"after": bad}) as resp:
        await expect_error(resp, 400, "invalid_after")


@pytest.mark.parametrize("bad", ["0", "-1", "1001", "abc", "1.5", "", " "])
async def test_history_bad_limit_is_400(make_client: MakeClient, room: str, bad: str) -> None:
    client = await make_client()
    async with request(client, HISTORY, room, params={"limit": bad}) as resp:
        detail = await expect_error(resp, 400, "invalid_limit")
    assert "1-1000" in detail


@pytest.mark.parametrize("good", ["1", "1000"])
async def test_history_limit_bounds_are_accepted(
    make_client: MakeClient, room: str, good: str
) -> None:
    client = await make_client()
    async with request(client, HISTORY, room, params={"limit": good}) as resp:
        assert resp.status == 200, await resp.text()


# Ids of the right shape whose parts do not fit Redis' 64-bit stream ids.
BEYOND_64_BITS = ["18446744073709551616-0", "0-18446744073709551616", "99999999999999999999-0"]


@pytest.mark.parametrize("redis", [False, True], ids=["memory", "redis"])
@pytest.mark.parametrize("bad", BEYOND_64_BITS)
async def test_history_after_beyond_64_bits_is_400(
    make_client: MakeClient, room: str, redis: bool, bad: str
) -> None:
    client = await make_client(redis=redis)
    async with request(client, HISTORY, room, params={"after": bad}) as resp:
        await expect_error(resp, 400, "invalid_after")


@pytest.mark.parametrize("redis", [False, True], ids=["memory", "redis"])
@pytest.mark.parametrize("bad", BEYOND_64_BITS)
async def test_stream_last_event_id_beyond_64_bits_is_400(
    make_client: MakeClient, room: str, redis: bool, bad: str
) -> None:
    client = await make_client(redis=redis)
    async with request(client, STREAM, room, headers={**auth(), "Last-Event-ID": bad}) as resp:
        await expect_error(resp, 400, "invalid_last_event_id")


async def test_history_after_the_largest_stream_id_is_empty_not_503(
    make_client: MakeClient, room: str
) -> None:
    client = await make_client(redis=True)
    top = "18446744073709551615-18446744073709551615"
    async with request(client, HISTORY, room, params={"after": top}) as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["logs"] == []


# -- 401 -------------------------------------------------------------------------------------------


def _claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iat": now, "exp": now + 600, "rooms": "*", "publish": "*", **extra}


def _forged() -> str:
    """A real token whose payload was swapped for another: the signature no longer matches."""
    head, _, sig = token(rooms=["mine"]).split(".")
    other = jwt.encode(_claims(), SECRET, algorithm="HS256").split(".")[1]
    return f"{head}.{other}.{sig}"


def _right_secret_wrong_alg() -> str:
    """Signed with the server's own secret, but with HS512, which the allowlist leaves out."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(_claims(), SECRET, algorithm="HS512")


BAD_TOKENS: dict[str, tuple[Any, str]] = {
    "garbage": (lambda: "not-a-jwt", "invalid_token"),
    "three-garbage-parts": (lambda: "aaa.bbb.ccc", "invalid_token"),
    "bad-signature": (
        lambda: jwt.encode(_claims(), "another-secret-" + "x" * 40, algorithm="HS256"),
        "invalid_token",
    ),
    "forged-payload": (_forged, "invalid_token"),
    "expired": (lambda: token(ttl=-3600), "token_expired"),
    "no-exp": (
        lambda: jwt.encode({"rooms": "*", "publish": "*"}, SECRET, algorithm="HS256"),
        "invalid_token",
    ),
    "alg-none": (lambda: jwt.encode(_claims(), "", algorithm="none"), "invalid_token"),
    "alg-not-in-allowlist": (_right_secret_wrong_alg, "invalid_token"),
}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("make_token", "code"), BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
async def test_bad_token_is_401_with_www_authenticate(
    make_client: MakeClient, room: str, route: str, make_token: Any, code: str
) -> None:
    client = await make_client()
    bad = make_token()
    async with request(client, route, room, headers=auth(bad)) as resp:
        detail = await expect_error(resp, 401, code)
        challenge = resp.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="roomlogs"')
    assert 'error="invalid_token"' in challenge
    assert bad not in detail
    assert bad not in challenge


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({}, None),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, None),
        ({"Authorization": "Bearer "}, None),
        ({}, {"access_token": ""}),
        ({"Cookie": "roomlogs_token="}, None),
    ],
    ids=["nothing", "basic-auth", "empty-bearer", "empty-query", "empty-cookie"],
)
async def test_missing_token_is_401_with_www_authenticate(
    make_client: MakeClient,
    room: str,
    route: str,
    headers: dict[str, str],
    params: dict[str, str] | None,
) -> None:
    client = await make_client()
    async with request(client, route, room, headers=headers, params=params) as resp:
        await expect_error(resp, 401, "missing_token")
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="roomlogs"'


# -- 403 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", [STREAM, HISTORY])
@pytest.mark.parametrize(
    "rooms", [["other-room"], [], ["test-room"]], ids=["other", "none", "prefix"]
)
async def test_room_not_in_rooms_claim_is_403(
    make_client: MakeClient, room: str, route: str, rooms: Any
) -> None:
    client = await make_client()
    async with request(client, route, room, headers=auth(token(rooms=rooms))) as resp:
        detail = await expect_error(resp, 403, "room_not_allowed")
    assert "'rooms'" in detail


@pytest.mark.parametrize(
    "publish", [[], ["other-room"]], ids=["no-publish-claim", "other-room-only"]
)
async def test_publish_without_publish_claim_for_the_room_is_403(
    make_client: MakeClient, room: str, publish: list[str]
) -> None:
    client = await make_client()
    tok = token(rooms="*", publish=publish)
    async with request(client, PUBLISH, room, headers=auth(tok)) as resp:
        detail = await expect_error(resp, 403, "room_not_allowed")
    assert "'publish'" in detail
    async with request(client, HISTORY, room) as resp:
        assert (await resp.json())["logs"] == []


async def test_publish_claim_does_not_grant_reading(make_client: MakeClient, room: str) -> None:
    client = await make_client()
    tok = token(rooms=["other-room"], publish=[room])
    async with request(client, PUBLISH, room, headers=auth(tok)) as resp:
        assert resp.status == 202, await resp.text()
    for route in (STREAM, HISTORY):
        async with request(client, route, room, headers=auth(tok)) as resp:
            await expect_error(resp, 403, "room_not_allowed")


# -- 404 with ROOM_CHECK=redis ---------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
async def test_unknown_room_is_404_until_its_key_exists(
    make_client: MakeClient, redis_server: RedisServer, room: str, route: str
) -> None:
    client = await make_client(redis=True, room_check="redis")
    await broker_live(client)
    async with request(client, route, room) as resp:
        detail = await expect_error(resp, 404, "unknown_room")
    assert room in detail

    redis_server.cli("SET", f"room:{room}", "1")
    try:
        async with request(client, route, room) as resp:
            if route == STREAM:
                assert resp.status == 200, await resp.text()
                assert (await SSEStream(resp).next()).event == "connected"
            else:
                assert resp.status == (202 if route == PUBLISH else 200), await resp.text()
    finally:
        redis_server.cli("DEL", f"room:{room}")


async def test_room_check_off_serves_rooms_without_a_key(
    make_client: MakeClient, room: str
) -> None:
    client = await make_client(redis=True)
    async with request(client, HISTORY, room) as resp:
        assert resp.status == 200, await resp.text()


# -- 413 -------------------------------------------------------------------------------------------


async def test_log_over_max_message_bytes_is_413(make_client: MakeClient, room: str) -> None:
    client = await make_client(max_message_bytes=1024)
    big = log_with(message="x" * 1024)
    async with request(client, PUBLISH, room, body=big) as resp:
        detail = await expect_error(resp, 413, "too_large")
    assert "1024" in detail
    async with request(client, HISTORY, room) as resp:
        assert (await resp.json())["logs"] == []


async def test_log_just_under_max_message_bytes_is_accepted(
    make_client: MakeClient, room: str
) -> None:
    client = await make_client(max_message_bytes=1024)
    log = log_with(message="")
    log["message"] = "x" * (1024 - len(orjson.dumps(log)))
    assert len(orjson.dumps(log)) == 1024
    async with request(client, PUBLISH, room, body=log) as resp:
        assert resp.status == 202, await resp.text()


async def test_one_large_log_in_a_batch_is_413_and_nothing_is_stored(
    make_client: MakeClient, room: str
) -> None:
    client = await make_client(max_message_bytes=1024)
    batch = [sample_log(0), log_with(message="x" * 2048), sample_log(2)]
    async with request(client, PUBLISH, room, data=orjson.dumps(batch)) as resp:
        detail = await expect_error(resp, 413, "too_large")
    assert "[1]" in detail
    async with request(client, HISTORY, room) as resp:
        assert (await resp.json())["logs"] == []


async def test_log_over_max_message_bytes_is_413_with_the_default_limit(
    make_client: MakeClient, room: str
) -> None:
    client = await make_client()
    async with request(client, PUBLISH, room, body=log_with(message="x" * 65536)) as resp:
        await expect_error(resp, 413, "too_large")


async def test_body_over_the_request_size_limit_is_413(make_client: MakeClient, room: str) -> None:
    client = await make_client(max_message_bytes=256)  # request limit: max(1 MiB, 100 logs)
    data = io.BytesIO(b"[" + b" " * (1 << 20) + b"]")
    async with client.post(path(room, PUBLISH), data=data, headers=auth()) as resp:
        await expect_error(resp, 413, "too_large")


# -- 503 + Retry-After -----------------------------------------------------------------------------


async def _published_total(client: Client) -> float:
    async with client.get("/metrics") as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith("roomlogs_published_logs_total "):
            return float(line.split()[1])
    raise AssertionError("roomlogs_published_logs_total is missing from /metrics")


async def test_publish_with_redis_down_is_503_and_not_stored(
    make_client: MakeClient, own_redis: RedisServer, room: str
) -> None:
    client = await make_client(redis=True, redis_url=own_redis.url)
    async with request(client, PUBLISH, room) as resp:
        assert resp.status == 202, await resp.text()
    assert await _published_total(client) == 1

    own_redis.kill()
    for body in (sample_log(2), [sample_log(3), sample_log(4)]):
        async with request(client, PUBLISH, room, body=body) as resp:
            detail = await expect_error(resp, 503, "broker_unavailable")
            assert resp.headers["Retry-After"] == "1"
        assert "not stored" in detail
    assert await _published_total(client) == 1


async def test_history_with_redis_down_is_503(
    make_client: MakeClient, own_redis: RedisServer, room: str
) -> None:
    client = await make_client(redis=True, redis_url=own_redis.url)
    async with request(client, HISTORY, room) as resp:
        assert resp.status == 200, await resp.text()
    own_redis.kill()
    async with request(client, HISTORY, room) as resp:
        await expect_error(resp, 503, "broker_unavailable")
        assert resp.headers["Retry-After"] == "1"


@pytest.mark.parametrize("route", [PUBLISH, HISTORY])
async def test_room_check_with_redis_down_is_503(
    make_client: MakeClient, own_redis: RedisServer, room: str, route: str
) -> None:
    client = await make_client(redis=True, redis_url=own_redis.url, room_check="redis")
    own_redis.cli("SET", f"room:{room}", "1")
    async with request(client, route, room) as resp:
        assert resp.status in (200, 202), await resp.text()
    own_redis.kill()
    async with request(client, route, room) as resp:
        await expect_error(resp, 503, "broker_unavailable")
        assert resp.headers["Retry-After"] == "1"


async def test_stream_room_check_with_redis_down_is_a_transient_refusal_not_503(
    make_client: MakeClient, own_redis: RedisServer, room: str
) -> None:
    client = await make_client(redis=True, redis_url=own_redis.url, room_check="redis")
    await broker_live(client)
    own_redis.cli("SET", f"room:{room}", "1")
    own_redis.kill()
    async with request(client, STREAM, room) as resp:
        # EventSource gives up for good on any non-200: a broker outage must not be final.
        assert resp.status == 200, await resp.text()
        event = await SSEStream(resp).next()
    assert event.event == "unavailable"
    assert event.json()["reason"] == "broker_unavailable"


# -- no Redis key is ever built from a bad room id -------------------------------------------------


class Monitor:
    """`redis-cli MONITOR` as a subprocess: every command the server runs, as text lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    async def wait_for(self, needle: str, timeout: float = 10) -> None:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.proc.stdout.readline()
                if not raw:
                    raise EOFError(f"MONITOR ended before {needle!r}: {self.lines[-5:]}")
                line = raw.decode("utf-8", "backslashreplace")
                self.lines.append(line)
                if needle in line:
                    return


@contextlib.asynccontextmanager
async def monitor(redis: RedisServer) -> AsyncIterator[Monitor]:
    proc = await asyncio.create_subprocess_exec(
        shutil.which("redis-cli") or "redis-cli",
        "-p",
        str(redis.port),
        "MONITOR",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    mon = Monitor(proc)
    try:
        await mon.wait_for("OK")  # MONITOR is on from here
        yield mon
    finally:
        if proc.returncode is None:
            proc.kill()
        await asyncio.wait_for(proc.wait(), timeout=10)


@pytest.mark.parametrize("route", ROUTES)
async def test_no_redis_key_is_built_from_a_bad_room_id(
    make_client: MakeClient, redis_server: RedisServer, route: str
) -> None:
    marker = f"mark{uuid.uuid4().hex}"
    bad_ids = [
        f"bad:{marker}",
        f"-{marker}",
        f".{marker}",
        f"_{marker}",
        marker + "a" * (129 - len(marker)),
        f"{marker} b",
        f"{marker}\n",
        f"{marker}*",
        f"{marker}\u00e9",
        f"{marker}\u623f",
        f"{marker}\r\nFLUSHALL",
    ]
    sentinel = f"sentinel-{uuid.uuid4().hex}"
    client = await make_client(redis=True, room_check="redis")
    await broker_live(client)
    async with monitor(redis_server) as mon:
        for bad in bad_ids:
            params = {"after": "1-0", "history": "5"}
            async with request(client, route, bad, params=params) as resp:
                await expect_error(resp, 400, "invalid_room_id")
        # A good request for the sentinel room does reach Redis (EXISTS room:{sentinel}) ...
        async with request(client, route, sentinel) as resp:
            await expect_error(resp, 404, "unknown_room")
        # ... and MONITOR shows commands in execution order, so once it shows the sentinel, it
        # has shown anything the bad requests before it made Redis do.
        await mon.wait_for(sentinel)
    output = "".join(mon.lines)
    assert f'"room:{sentinel}"' in output
    assert marker not in output
