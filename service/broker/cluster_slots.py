"""What the Cluster broker knows of the cluster's shape: which primary serves each hash slot
(read through redis-py's nodes manager, i.e. `CLUSTER SLOTS`), the marker channel a session
subscribes first on each primary, and the connection options every node client shares (and
the pool of PUBLISH_REPLICAS' node clients)."""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
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


def node_of_slot(cluster: RedisCluster, slot: int) -> Addr | None:
    """The primary serving `slot` in redis-py's slot cache (a `MOVED` it followed included)."""
    nodes = cluster.nodes_manager.slots_cache.get(slot)
    return (nodes[0].host, int(nodes[0].port)) if nodes else None


def node_pool(addr: Addr, settings: Settings) -> aioredis.BlockingConnectionPool:
    """A pool of one node with the cluster client's options (as `_pool.make_pool` makes one
    Redis' pool: bounded and queueing, no retries inside redis-py, RESP2)."""
    options = connection_options(settings)
    tls = options.pop("ssl", False)  # a pool takes the connection class instead
    return aioredis.BlockingConnectionPool(
        connection_class=SSLConnection if tls else Connection,
        host=addr[0],
        port=addr[1],
        max_connections=settings.redis_pool_size,
        timeout=settings.redis_pool_timeout,
        retry=Retry(NoBackoff(), retries=0),
        socket_connect_timeout=2.0,
        socket_timeout=5.0,
        health_check_interval=10,
        protocol=2,
        **options,
    )


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
