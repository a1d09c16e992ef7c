"""The hub's fan-out: 1 room x N subscribers and R rooms x S, on in-memory transports.

One call is a loop turn: `dispatch` of the turn's messages, then `flush` (called directly;
the hub would run it with `loop.call_soon`). Idle, unfiltered, live subscribers: the shared
path (one joined buffer per room, written to every stream).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from service.cursor import Cursor, epoch_for
from service.hub import Hub
from service.message import Message, message_from_log
from service.subscriber import Subscriber


class CountingTransport(asyncio.Transport):
    """A socket that takes every write and counts its bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.writes = 0
        self.protocol: asyncio.BaseProtocol | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += len(data)
        self.writes += 1

    def is_closing(self) -> bool:
        return False

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol

    def get_write_buffer_size(self) -> int:
        return 0


def log(seq: int) -> dict[str, Any]:
    return {
        "timestamp": "2026-12-02T12:00:00.000Z",
        "agentType": "bench",
        "level": "info",
        "message": "x" * 150,
        "metadata": {"seq": seq, "sentAt": 1764676800.0},
    }


def messages(room: str, count: int, first: int = 0) -> list[Message]:
    return [
        message_from_log(room, f"1764676800000-{first + i}", log(first + i), None, None)
        for i in range(count)
    ]


def hub_with(rooms: list[str], per_room: int) -> tuple[Hub, list[CountingTransport]]:
    hub = Hub()
    transports = []
    for room in rooms:
        for _ in range(per_room):
            sub = Subscriber(room, 100_000)
            hub.add(sub)
            transport = CountingTransport()
            sub.attach(transport, chunked=True)
            transports.append(transport)
    return hub, transports


def turn(rooms: list[str], per_room: int, per_turn: int) -> Callable[[], None]:
    """One loop turn of `per_turn` messages to each of `rooms`."""
    hub, _ = hub_with(rooms, per_room)
    batch = [m for room in rooms for m in messages(room, per_turn)]
    dispatch, flush = hub.dispatch, hub.flush

    def run() -> None:
        for msg in batch:
            dispatch(msg)
        flush()

    return run


def turn_multi(rooms: list[str], streams: int, per_stream: int) -> Callable[[], None]:
    """One loop turn of one message to each of `rooms`, for `streams` multi-room streams each
    on `per_stream` of them (spread evenly): each room has streams * per_stream / len(rooms)."""
    hub = Hub()
    for i in range(streams):
        mine = [rooms[(i + k * (len(rooms) // per_stream)) % len(rooms)] for k in range(per_stream)]
        sub = Subscriber(mine, 100_000, cursor=Cursor(mine, epoch_for(1764676800000)))
        hub.add(sub)
        sub.attach(CountingTransport(), chunked=True)
    batch = [m for room in rooms for m in messages(room, 1)]
    dispatch, flush = hub.dispatch, hub.flush

    def run() -> None:
        for msg in batch:
            dispatch(msg)
        flush()

    return run
