"""The live server against its own OpenAPI document, by schemathesis: a real
`python -m service serve` on a private redis-server, every documented operation called with
generated parameters, headers and bodies and a valid token, and every answer checked (no 5xx;
status, content type, headers and body as documented).

The stream never ends by itself, so this server runs with MAX_CONNECTIONS=1 and the module
holds that one stream open: every stream schemathesis opens that passes the checks (room id,
token, claim, query) is then the transient refusal, a 200 `text/event-stream` that ends after
one `unavailable` event. The stream's status codes, headers and content type are checked like
any other operation's, and what a stream that does go live sends (its events' `data` against
`components.schemas`) is checked by `test_live_stream_events_match_the_document` below, on a
second server, where a bounded read can end it. A response timeout would have tested the same
200 at the cost of the timeout per example, and left the checks without a whole body.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from openapi_schema_validator import OAS31Validator
from schemathesis import GenerationMode
from schemathesis.checks import negative_data_rejection

from service import openapi
from service.settings import Settings
from service.sse import iter_events
from tests.support.factories import SECRET, StartService, token
from tests.support.servers import RedisServer, ServiceProcess

TOKEN = token()
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _start(tmp_path: Path, name: str, **env: str) -> ServiceProcess:
    proc = ServiceProcess(env={"JWT_SECRET": SECRET, **env})
    proc.start(tmp_path / f"{name}.log")
    try:
        asyncio.run(proc.wait_healthy())
    except BaseException:
        proc.stop()
        raise
    return proc


def _hold_stream(port: int) -> socket.socket:
    """Open a stream and read until its `connected` event: the one slot is then taken."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(
        f"GET /api/v1/rooms/held/logs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
    )
    seen = b""
    while b"event: connected" not in seen:
        chunk = sock.recv(4096)
        assert chunk, f"the held stream ended: {seen!r}"
        seen += chunk
    assert seen.startswith(b"HTTP/1.1 200"), seen
    return sock


@pytest.fixture(scope="module")
def live(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc = _start(
        tmp_path_factory.mktemp("schemathesis"),
        "service",
        REDIS_URL=redis_server.url,
        MAX_CONNECTIONS="1",
    )
    try:
        held = _hold_stream(proc.port)
        try:
            yield proc.url
        finally:
            held.close()
    finally:
        assert proc.stop() == 0, proc.output()


@pytest.fixture(scope="module")
def api_schema(live: str) -> Any:
    """The document as the live server serves it (not as this process would build it)."""
    loaded = schemathesis.openapi.from_url(live + "/openapi.json")
    loaded.config.update(base_url=live)
    # Generated publishes share Idempotency-Keys with other bodies: 422
    # `idempotency_key_reused` is then the documented answer to valid data, not a refusal.
    acceptance = loaded.config.checks.positive_data_acceptance
    acceptance.expected_statuses = [*acceptance.expected_statuses, "422"]
    return loaded


# The operations, from the document built in-process (collection needs no server); the test
# takes each one from the served document. Negative requests need something to make invalid:
# a body, a query parameter or a path parameter with a pattern (a header or a path segment of
# any string has no invalid value that can be sent).
_PATHS = openapi.build(Settings())["paths"]
RUNS = [
    (mode, method.upper(), path)
    for path, item in _PATHS.items()
    for method, operation in item.items()
    for mode in GenerationMode
    if mode is GenerationMode.POSITIVE
    or "requestBody" in operation
    or any(p["in"] == "query" or "pattern" in p["schema"] for p in operation.get("parameters", []))
]
EXAMPLES = 25  # per operation, derandomized: the same requests on every run


@pytest.mark.parametrize(
    ("mode", "method", "path"), RUNS, ids=[f"{m.value} {o} {p}" for m, o, p in RUNS]
)
def test_every_answer_matches_the_document(
    api_schema: Any, mode: GenerationMode, method: str, path: str
) -> None:
    """Positive: requests the document allows; negative: requests it does not (bad room ids,
    keys, bodies, parameters), which must be refused with a documented 4xx, never a 5xx."""
    operation = api_schema[path][method]
    strategy = operation.as_strategy(mode)
    if mode is GenerationMode.NEGATIVE:
        # A valid `Last-Event-ID` header wins over `lastEventId` (documented): an invalid query
        # value beside it is rightly ignored, which is no invalid request.
        strategy = strategy.filter(
            lambda case: (
                not (
                    (case.headers or {}).get("Last-Event-ID")
                    and (case.query or {}).get("lastEventId")
                )
            )
        )

    if mode is GenerationMode.POSITIVE and path == "/api/v1/logs":
        # A cursor is opaque: one that matches its pattern but was not issued by the service
        # is rightly 400 `invalid_last_event_id` (tests/app/test_multiroom.py resumes by real
        # ones). Every other parameter is still generated.
        strategy = strategy.filter(
            lambda case: (
                not (case.headers or {}).get("Last-Event-ID")
                and not (case.query or {}).get("lastEventId")
            )
        )

    excluded = []
    if mode is GenerationMode.NEGATIVE and method == "POST":
        # JsonValue bounds a log's integers to 64 bits, but JSON Schema counts 5.3e+54 as an
        # integer, which the service rightly keeps as the float it was sent as: a body the
        # document calls invalid that is accepted. Everything else is still checked (no 5xx;
        # status, content type, headers and body as documented).
        excluded.append(negative_data_rejection)

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        case.call_and_validate(headers=AUTH, timeout=10, excluded_checks=excluded)

    check()


def _event_validators(document: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Per event name: a validator of the event (`event`, `data`, `id`, `retry`) and one of
    its `data` once parsed (a validator reads `contentSchema` as a note, not a check)."""
    components = document["components"]
    validators = {}
    for entry in components["schemas"]["StreamEvent"]["oneOf"]:
        name = entry["properties"]["event"]["const"]
        data = entry["properties"]["data"]["contentSchema"]
        validators[name] = (
            OAS31Validator({**entry, "components": components}),
            OAS31Validator({**data, "components": components}),
        )
    return validators


async def test_live_stream_events_match_the_document(
    redis_server: RedisServer, service: StartService, room: str
) -> None:
    """A stream that goes live sends `connected`, `gap`, replayed `log`s and `heartbeat`s, and
    ends with `unavailable` (shutdown), each as the served document's `StreamEvent` says."""
    proc = await service(
        REDIS_URL=redis_server.url,
        HISTORY_MAX="1",  # trimmed at once: a resume from the first log is told of a gap
        HEARTBEAT_INTERVAL="0.2",
    )
    assert proc.proc is not None
    async with aiohttp.ClientSession(headers=AUTH, timeout=aiohttp.ClientTimeout(total=30)) as http:
        async with http.get(proc.url + "/openapi.json") as r:
            validators = _event_validators(await r.json())
        first: str | None = None
        for batch in range(3):  # Redis trims whole nodes of 100 entries (MAXLEN ~)
            logs = [
                {"agentType": "code", "level": "info", "message": f"{batch}.{n}"}
                for n in range(100)
            ]
            async with http.post(f"{proc.url}/api/v1/rooms/{room}/logs", json=logs) as r:
                assert r.status == 202, await r.text()
                first = first or (await r.json())["ids"][0]
        assert first is not None
        seen: dict[str, int] = {}
        async with http.get(
            f"{proc.url}/api/v1/rooms/{room}/logs", params={"lastEventId": first}
        ) as stream:
            assert stream.status == 200
            async for event in iter_events(stream.content):
                item: dict[str, Any] = {"event": event.event, "data": event.data}
                if event.id is not None:
                    item["id"] = event.id
                if event.retry is not None:
                    item["retry"] = event.retry
                outer, inner = validators[event.event]
                outer.validate(item)
                inner.validate(event.json())
                seen[event.event] = seen.get(event.event, 0) + 1
                if event.event == "heartbeat" and "unavailable" not in seen:
                    proc.proc.send_signal(signal.SIGTERM)
                    seen["unavailable"] = 0  # asked for: the drain's farewell
        assert seen.keys() == {"connected", "gap", "log", "heartbeat", "unavailable"}, seen
        assert seen["unavailable"] == 1, seen
    assert proc.proc.wait(timeout=20) == 0, proc.output()
