"""Checks every room route makes, in the order DESIGN.md gives: room id, token, claim, room."""

from __future__ import annotations

from aiohttp import web

from ..auth import AuthError, Grant, token_from_request
from ..broker import BrokerUnavailable
from ..errors import ApiError
from ..rooms import is_valid_room_id
from ..state import AppState


def whole_number(text: str) -> int | None:
    """A query's count: ASCII digits only (no sign, `_`, spaces or other scripts' digits, which
    `int()` would take), at most 9 of them; None otherwise."""
    if not (text.isascii() and text.isdigit() and len(text) <= 9):
        return None
    return int(text)


def valid_room(request: web.Request) -> str:
    room = request.match_info["roomId"]
    if not is_valid_room_id(room):
        raise ApiError(
            400,
            "invalid_room_id",
            "room ids are 1-128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit",
        )
    return room


async def authorize(request: web.Request, state: AppState, room: str, *, publish: bool) -> Grant:
    return await authorize_all(request, state, (room,), publish=publish)


async def authorize_all(
    request: web.Request, state: AppState, rooms: tuple[str, ...], *, publish: bool
) -> Grant:
    """401 without a valid token, 403 naming the first of `rooms` its claim does not cover."""
    token = token_from_request(request, state.settings.auth_cookie)
    if token is None:
        raise ApiError(
            401,
            "missing_token",
            "send a token as 'Authorization: Bearer …', ?access_token= or the "
            f"{state.settings.auth_cookie} cookie",
            {"WWW-Authenticate": 'Bearer realm="roomlogs"'},
        )
    try:
        grant = await state.verifier.verify(token)
    except AuthError as exc:
        if exc.transient:
            raise ApiError(503, exc.code, exc.detail, {"Retry-After": "5"}) from None
        raise ApiError(
            401,
            exc.code,
            exc.detail,
            {
                "WWW-Authenticate": f'Bearer realm="roomlogs", error="invalid_token", '
                f'error_description="{exc.detail}"'
            },
        ) from None
    for room in rooms:
        allowed = grant.can_publish(room) if publish else grant.can_read(room)
        if not allowed:
            claim = "publish" if publish else "rooms"
            raise ApiError(
                403, "room_not_allowed", f"room {room!r} is not in the token's {claim!r} claim"
            )
    return grant


def broker_unavailable(exc: BrokerUnavailable, what: str) -> ApiError:
    """503 for a publish or history read the broker cannot serve now: nothing was stored."""
    return ApiError(503, "broker_unavailable", f"{what}: {exc}; retry later", {"Retry-After": "1"})


async def check_room(state: AppState, room: str) -> None:
    """ROOM_CHECK=redis: the room must exist as the key `room:{id}` (set by the app backend)."""
    if state.settings.room_check != "redis":
        return
    try:
        exists = await state.broker.room_exists(room)
    except BrokerUnavailable:
        raise ApiError(
            503, "broker_unavailable", "cannot check the room now", {"Retry-After": "1"}
        ) from None
    if not exists:
        raise ApiError(404, "unknown_room", f"room {room!r} does not exist")
