"""The OpenAPI document is valid OpenAPI 3.1, and whole: every route the app serves, every
error code the service raises and every stream event it names are in it, so a route, code or
event added later without it fails here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from openapi_spec_validator import validate

from service.app import create_app
from service.events import EventName
from service.openapi import build
from service.state import STATE
from tests.support.factories import MakeClient, settings

SERVICE = Path(__file__).resolve().parents[2] / "service"
# `ApiError(400, "invalid_json", …` and `AuthError("token_expired", …`: the codes raised.
_RAISED = re.compile(r'(?:ApiError\(\s*\d{3},\s*|AuthError\(\s*)"([a-z_]+)"')
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _document() -> dict[str, Any]:
    return build(settings())


def _routes(app: web.Application) -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every route in the app's router."""
    served = set()
    for resource in app.router.resources():
        info = resource.get_info()
        path = info.get("formatter") or info.get("path")
        assert isinstance(path, str), info
        for route in resource:
            served.add((route.method.lower(), path))
    return served


def _documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method, path)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }


def test_the_document_is_valid_openapi_3_1() -> None:
    document = _document()
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_every_route_the_app_serves_is_documented() -> None:
    served = _routes(create_app(settings()))
    assert ("get", "/api/v1/rooms/{roomId}/logs") in served  # the router was read
    assert served - _documented(_document()) == set()


def test_the_document_lists_no_route_the_app_lacks() -> None:
    assert _documented(_document()) - _routes(create_app(settings())) == set()


def test_every_error_code_the_service_raises_is_documented() -> None:
    raised = {code for path in SERVICE.rglob("*.py") for code in _RAISED.findall(path.read_text())}
    assert {"invalid_room_id", "missing_token", "publish_outcome_unknown"} <= raised
    documented = set()
    for item in _document()["paths"].values():
        for operation in item.values():
            for response in operation.get("responses", {}).values():
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                documented |= set(schema.get("properties", {}).get("error", {}).get("enum", []))
    assert raised - documented == set()


def test_every_stream_event_has_a_schema() -> None:
    document = _document()
    events = document["components"]["schemas"]["StreamEvent"]["oneOf"]
    assert [e["properties"]["event"]["const"] for e in events] == [e.value for e in EventName]
    for event in events:
        ref = event["properties"]["data"]["contentSchema"]["$ref"]
        assert ref.removeprefix("#/components/schemas/") in document["components"]["schemas"]


async def test_the_app_serves_the_document_of_its_settings(make_client: MakeClient) -> None:
    client = await make_client(history_max=7, auth_cookie="session")
    async with client.get("/openapi.json") as r:
        assert r.status == 200
        assert r.content_type == "application/json"
        served = orjson.loads(await r.read())
    assert served == orjson.loads(orjson.dumps(build(client.app[STATE].settings)))
    assert served["components"]["securitySchemes"]["cookie"]["name"] == "session"
