"""Requests aiohttp's own parser refuses get an ordinary access line and one INFO line saying
why, never an ERROR traceback (anyone could fill the log with those)."""

from __future__ import annotations

import asyncio

import orjson

from tests.support.aio import poll_until
from tests.support.factories import StartService

BAD_REQUESTS = {
    "bad chunking": b"POST /api/v1/rooms/a/logs HTTP/1.1\r\nHost: x\r\n"
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
    "length and chunked": b"POST /api/v1/rooms/a/logs HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "9 KB header": b"GET /api/v1/rooms/a/logs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
    + b"a" * 9000
    + b"\r\n\r\n",
}


async def _send(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    async with asyncio.timeout(10):
        answer = await reader.read(65536)
    writer.close()
    return answer


async def test_requests_the_parser_refuses_get_an_access_line_and_no_error(
    service: StartService,
) -> None:
    srv = await service(LOG_FORMAT="json")
    for raw in BAD_REQUESTS.values():
        answer = await _send(srv.port, raw)
        assert answer.split(b" ", 2)[1].startswith(b"4"), answer[:80]  # aiohttp's 4xx

    def entries() -> list[dict[str, object]]:
        return [orjson.loads(line) for line in srv.output().splitlines() if line.strip()]

    def access() -> list[dict[str, object]]:
        """Access lines but those of the start-up's readiness probes."""
        return [e for e in entries() if e["logger"] == "aiohttp.access" and e["path"] != "/readyz"]

    async def logged() -> bool:
        return len(access()) >= len(BAD_REQUESTS)

    await poll_until(logged)
    assert [str(e["status"])[0] for e in access()] == ["4"] * len(BAD_REQUESTS)
    assert all(e["room"] is None for e in access())
    assert not [e for e in entries() if e["level"] == "ERROR" or "exc" in e]
    refused = [e for e in entries() if "refused by the HTTP parser" in str(e["message"])]
    assert len(refused) == len(BAD_REQUESTS)  # one INFO line each, saying why
