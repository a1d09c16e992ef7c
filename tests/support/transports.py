"""In-memory sockets: real `asyncio.Transport`s (not mocks) for driving the hub, a subscriber
and its connection without a server."""

from __future__ import annotations

import asyncio


class SinkTransport(asyncio.Transport):
    """The receiving end of a handed-off stream, in memory: it keeps what is written to it.

    A real `asyncio.Transport` (not a mock) for driving the hub and a subscriber without a
    socket; `arrived` is set by every write, so a test awaits data instead of sleeping.
    """

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closing = False
        self.arrived = asyncio.Event()
        self._protocol: asyncio.BaseProtocol | None = None

    @property
    def data(self) -> bytes:
        return b"".join(self.writes)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))
        self.arrived.set()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._protocol is not None
        return self._protocol

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def get_write_buffer_size(self) -> int:
        return 0

    async def next_write(self, timeout: float = 5) -> bytes:
        """Wait for the next write and return everything written so far, then forget it."""
        async with asyncio.timeout(timeout):
            await self.arrived.wait()
        self.arrived.clear()
        data = self.data
        self.writes.clear()
        return data


class ClientTransport(asyncio.Transport):
    """All the hub reads of a connection: whether it is closing. A real object, not a mock."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False

    def is_closing(self) -> bool:
        return self.closing
