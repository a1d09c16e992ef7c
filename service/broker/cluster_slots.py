"""What the Cluster broker knows of the cluster's shape: which primary serves each hash slot
(read through redis-py's nodes manager, i.e. `CLUSTER SLOTS`), the marker channel a session
subscribes first on each primary, and the connection options every node client shares."""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import unquote, urlsplit

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from ..settings import Settings

Addr = tuple[str, int]
# A shard channel in one of a primary's slots (`{N}` chosen so that it hashes there).
MARKER: Final = "roomlogs:node:{{{}}}"
_MARKER_TRIES: Final = 100_000


class SlotMap:
    """Slot -> the address of the primary serving it, as last read."""

    def __init__(self) -> None:
        self.owners: dict[int, Addr] = {}

    async def read(self, cluster: RedisCluster) -> None:
        """Read the map again (redis-py's own routing is refreshed with it)."""
        manager = cluster.nodes_manager
        await manager.initialize()
        owners = {
            slot: (nodes[0].host, int(nodes[0].port))
            for slot, nodes in manager.slots_cache.items()
            if nodes
        }
        if not owners:
            raise LookupError("the cluster reports no slots")
        self.owners = owners

    @property
    def primaries(self) -> set[Addr]:
        return set(self.owners.values())

    def owner(self, key: str) -> Addr | None:
        """The primary serving `key`'s slot (a channel hashes like a key)."""
        return self.owners.get(key_slot(key.encode()))

    def marker(self, addr: Addr) -> str:
        """A shard channel in one of `addr`'s slots: its subscription confirms the session is
        up, and Redis pushes its `sunsubscribe` when the node stops serving that slot."""
        for i in range(_MARKER_TRIES):
            name = MARKER.format(i)
            if self.owner(name) == addr:
                return name
        raise LookupError(f"no slot of {addr[0]}:{addr[1]} found")


def slot_primaries(reply: Any) -> list[tuple[int, Addr]]:
    """(first slot, primary) of each range of a `CLUSTER SLOTS` reply: redis-py 8 parses it
    into `{(start, end): {"primary": (host, port), ...}}`; the raw list form is read too."""
    if isinstance(reply, dict):
        return [(int(start), _addr(shard["primary"])) for (start, _), shard in reply.items()]
    return [(int(row[0]), _addr(row[2])) for row in reply]


def _addr(node: Any) -> Addr:
    host = node[0].decode() if isinstance(node[0], bytes) else str(node[0])
    return host, int(node[1])


def connection_options(settings: Settings) -> dict[str, Any]:
    """User, password and TLS for every node: in a Cluster REDIS_URL carries only those
    (settings.py), and the REDIS_TLS_* files apply as on one Redis."""
    options: dict[str, Any] = dict(settings.redis_options)
    if settings.redis_url:
        parts = urlsplit(settings.redis_url)
        if parts.username:
            options["username"] = unquote(parts.username)
        if parts.password:
            options["password"] = unquote(parts.password)
        if parts.scheme == "rediss":
            options["ssl"] = True
    return options
