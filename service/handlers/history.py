"""`GET /api/v1/rooms/{roomId}/logs/history`: retained logs as JSON, oldest first, in pages."""

from __future__ import annotations

from typing import Final

import orjson
from aiohttp import web

from ..broker import BrokerUnavailable
from ..errors import ApiError
from ..ids import parse_id
from ..state import STATE
from .common import authorize, broker_unavailable, check_room, valid_room, whole_number

HISTORY_LIMIT_MAX: Final = 1000


async def history(request: web.Request) -> web.Response:
    state = request.app[STATE]
    room = valid_room(request)
    await authorize(request, state, room, publish=False)
    await check_room(state, room)
    after = request.query.get("after") or None
    if after is not None and parse_id(after) is None:
        raise ApiError(400, "invalid_after", "after must be a stream id such as 1700000000000-0")
    limit = whole_number(request.query.get("limit", "100")) or 0
    if not 1 <= limit <= HISTORY_LIMIT_MAX:
        raise ApiError(400, "invalid_limit", f"limit must be 1-{HISTORY_LIMIT_MAX}")
    try:
        entries = await state.broker.history(room, after, limit + 1)
    except BrokerUnavailable as exc:
        raise broker_unavailable(exc, "history cannot be read now") from None
    more = len(entries) > limit
    entries = entries[:limit]
    # The stored one-line JSON as it is, with its id put first: no log is parsed or encoded
    # again (cheaper, and a log orjson could not encode again cannot break the page).
    logs = b",".join([_with_id(stream_id, data) for stream_id, data in entries])
    head = orjson.dumps({"roomId": room, "next": entries[-1][0] if more else None})
    body = head[:-1] + b',"logs":[' + logs + b"]}"
    return web.Response(body=body, content_type="application/json")


def _with_id(stream_id: str, log: bytes) -> bytes:
    """`log` (an object's one-line JSON) with `"id":"<stream_id>"` as its first member."""
    rest = b"}" if log == b"{}" else b"," + log[1:]
    return b'{"id":"' + stream_id.encode("ascii") + b'"' + rest
