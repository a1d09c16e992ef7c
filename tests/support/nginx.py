"""nginx in front of real gateways, beyond `servers.Nginx`: the room affinity of
config/nginx.conf switched on (docs/nginx.md), and what tells which gateway served a stream
(the gateway's own /metrics while it is open, nginx's access log once it ended)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import aiohttp

from tests.support.aio import poll_until
from tests.support.servers import Nginx

AFFINITY_TAG = "# @affinity"


def enable_room_affinity(text: str) -> str:
    """The rendered config with the `# @affinity` line uncommented: what an operator does to
    switch it on. Exactly one such line, else config/nginx.conf changed under the docs."""
    out: list[str] = []
    found = 0
    for line in text.splitlines():
        if line.rstrip().endswith(AFFINITY_TAG):
            found += 1
            indent = line[: len(line) - len(line.lstrip())]
            directive = line.strip().removeprefix("#").split("#", 1)[0].strip()
            line = f"{indent}{directive}"
        out.append(line)
    assert found == 1, f"{found} lines tagged {AFFINITY_TAG!r} in config/nginx.conf"
    return "\n".join(out) + "\n"


def affinity_nginx(workdir: Path, gateways: Sequence[int]) -> Nginx:
    """`servers.Nginx` (the same rendering, ports and certificate) with the room affinity on."""
    nginx = Nginx(workdir, gateways)
    nginx.conf.write_text(enable_room_affinity(nginx.conf.read_text()))
    return nginx


async def open_streams(http: aiohttp.ClientSession, base: str) -> float:
    """`roomlogs_connections` of the gateway at `base`, summed over its workers."""
    async with http.get(base + "/metrics") as r:
        assert r.status == 200
        text = await r.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(("roomlogs_connections ", "roomlogs_connections{"))
    )


async def streams_by_gateway(
    http: aiohttp.ClientSession, gateways: Sequence[str], total: int, timeout: float = 10
) -> list[float]:
    """Each gateway's open streams, once they add up to `total` (a stream a client saw
    `connected` on is registered; a closed one may take a moment to be forgotten)."""
    counts: list[float] = []

    async def settled() -> bool:
        nonlocal counts
        counts = [await open_streams(http, url) for url in gateways]
        return sum(counts) == total

    await poll_until(settled, timeout=timeout)
    return counts


async def upstreams_of(nginx: Nginx, since: int, path: str, count: int) -> list[str]:
    """The gateway address (`$upstream_addr`) of the next `count` requests for `path` logged
    after offset `since`: a stream is logged when it ends."""
    found: list[str] = []

    async def logged() -> bool:
        nonlocal found
        found = [e["upstream"] for e in nginx.access_entries(since) if e["path"] == path]
        return len(found) >= count

    await poll_until(logged, timeout=10)
    return found
