"""`POST /api/v1/rooms/{roomId}/logs`: publish one log or an array of them."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from aiohttp import web

from ..broker import Broker, BrokerUnavailable, KeyReused, PublishOutcomeUnknown
from ..errors import ApiError
from ..logs import (
    MAX_NESTING,
    InvalidLog,
    inexact_integer,
    may_nest_too_deep,
    nests_too_deep,
    normalize,
    utc_now_iso,
)
from ..rooms import is_valid_publish_key
from ..state import STATE
from .common import authorize, broker_unavailable, check_room, valid_room

MAX_BATCH = 100


def fingerprint(body: bytes) -> str:
    """What an idempotent publish is compared by: the request body as the client sent it.

    Not the logs as the service stores them: a log without `timestamp` gets a new one on every
    retry, and that retry is still the same publish.
    """
    return hashlib.sha256(body).hexdigest()[:32]


async def publish_logs(request: web.Request) -> web.Response:
    state = request.app[STATE]
    room = valid_room(request)
    await authorize(request, state, room, publish=True)
    await check_room(state, room)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not is_valid_publish_key(key):
        raise ApiError(
            400,
            "invalid_idempotency_key",
            "Idempotency-Key is 1-128 characters of A-Z a-z 0-9 . _ : -",
        )
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"the body is not JSON ({exc})") from None
    inexact = inexact_integer(raw)
    if inexact is not None:
        raise ApiError(
            400,
            "invalid_json",
            f"the integer {inexact[:24].decode()}… is beyond 64 bits and would not be kept "
            "exactly: send it as a string",
        )
    batch = body if isinstance(body, list) else [body]
    if not batch:
        raise ApiError(400, "invalid_body", "an empty array holds no log")
    if len(batch) > MAX_BATCH:
        raise ApiError(400, "too_many_logs", f"at most {MAX_BATCH} logs per request")
    encoded: list[bytes] = []
    limit = state.settings.max_message_bytes
    # Once per request, not per log: the brackets of the whole body (a batch of 100 counted
    # them 100 times over), and one timestamp for the logs that bring none.
    suspect = may_nest_too_deep(raw)
    now = utc_now_iso()
    for index, item in enumerate(batch):
        where = f"[{index}]." if isinstance(body, list) else ""
        try:
            log: dict[str, Any] = normalize(item, now)
        except InvalidLog as exc:
            raise ApiError(400, "invalid_log", f"{where}{exc.field} {exc.detail}") from None
        if suspect and nests_too_deep(log):
            raise ApiError(
                400,
                "invalid_log",
                f"{where or 'the log '}nests objects and arrays more than {MAX_NESTING} deep",
            )
        data = orjson.dumps(log)
        if len(data) > limit:
            raise ApiError(
                413, "too_large", f"{where.rstrip('.') or 'the log'} is over {limit} bytes"
            )
        encoded.append(data)
    try:
        if key is None:
            ids, replayed = await state.broker.publish(room, encoded), False
        else:
            ids, replayed = await _publish_once(state.broker, room, encoded, key, raw)
    except BrokerUnavailable as exc:
        raise broker_unavailable(exc, "not stored") from None
    except PublishOutcomeUnknown as exc:
        again = (
            "with the same Idempotency-Key"
            if key
            else "with an Idempotency-Key (the same one each time)"
        )
        raise ApiError(
            504,
            "publish_outcome_unknown",
            f"the logs may or may not have been stored ({exc}): send them again {again}, "
            "which stores them once",
            {"Retry-After": "1"},
        ) from None
    if replayed:
        # Stored by an earlier request with this key whose answer was lost: not stored again.
        return web.json_response(
            {"roomId": room, "ids": ids, "replayed": True},
            status=202,
            headers={"Idempotent-Replayed": "true"},
        )
    state.metrics.published.inc(len(ids))
    return web.json_response({"roomId": room, "ids": ids}, status=202)


async def _publish_once(
    broker: Broker, room: str, encoded: list[bytes], key: str, raw: bytes
) -> tuple[list[str], bool]:
    try:
        published = await broker.publish_once(room, encoded, key, fingerprint(raw))
    except KeyReused:
        raise ApiError(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was used for other logs; use a new key for a new publish",
        ) from None
    return published.ids, published.replayed
