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
    any_may_nest_too_deep,
    encode_log,
    inexact_integer,
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
    encoded = encoded_logs(raw, state.settings.max_message_bytes)
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
        return _accepted(
            {"roomId": room, "ids": ids, "replayed": True}, {"Idempotent-Replayed": "true"}
        )
    state.metrics.published.inc(len(ids))
    return _accepted({"roomId": room, "ids": ids})


def encoded_logs(raw: bytes, limit: int) -> list[bytes]:
    """The logs of a request body, checked and encoded as they are stored, or the ApiError
    of the first bad one (by its index in an array).

    The body is decoded once and each log checked and encoded once. A batch whose logs all
    pass is accepted by checks over the whole batch (C loops: one `map`, one scan of the
    encodings' brackets, one `max`); any doubt is settled log by log, in order, which is
    also what names the first bad log.
    """
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
    array = isinstance(body, list)
    batch = body if array else [body]
    if not batch:
        raise ApiError(400, "invalid_body", "an empty array holds no log")
    if len(batch) > MAX_BATCH:
        raise ApiError(400, "too_many_logs", f"at most {MAX_BATCH} logs per request")
    now = utc_now_iso()
    try:
        encoded = list(map(orjson.dumps, [normalize(item, now) for item in batch]))
    except (InvalidLog, orjson.JSONEncodeError):
        return _one_by_one(batch, array, limit, now)
    if max(map(len, encoded)) > limit or any_may_nest_too_deep(encoded):
        return _one_by_one(batch, array, limit, now)
    return encoded


def _one_by_one(batch: list[Any], array: bool, limit: int, now: str) -> list[bytes]:
    """`encoded_logs` for a batch the whole-batch checks doubt: each log in turn, the first
    bad one refused. Its logs may have been normalized already, which changes nothing."""
    encoded: list[bytes] = []
    for index, item in enumerate(batch):
        try:
            data = encode_log(normalize(item, now))
        except InvalidLog as exc:
            where = f"[{index}]." if array else ""
            raise ApiError(400, "invalid_log", f"{where}{exc.field} {exc.detail}") from None
        if data is None:
            where = f"[{index}]." if array else "the log "
            raise ApiError(
                400, "invalid_log", f"{where}nests objects and arrays more than {MAX_NESTING} deep"
            )
        if len(data) > limit:
            where = f"[{index}]" if array else "the log"
            raise ApiError(413, "too_large", f"{where} is over {limit} bytes")
        encoded.append(data)
    return encoded


def _accepted(answer: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    """202 with the answer's JSON by orjson, as bytes (the stdlib's encoder cost more than a
    batch's 100 ids, and `json_response` would decode the JSON only to encode it again)."""
    return web.Response(
        body=orjson.dumps(answer),
        status=202,
        headers=headers,
        content_type="application/json",
        charset="utf-8",
    )


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
