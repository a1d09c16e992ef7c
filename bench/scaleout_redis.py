"""`bench.scaleout`'s view of Redis: the feeds that count the bytes of their replies (one
Redis, and the Cluster's per-primary script calls), the INFO counters over every node, the
subscriptions each gateway holds (CLIENT LIST, matched to its process through /proc), and what
Redis sent on each connection (the kernel's tcp_info, read with `ss`); where the gateways'
Redis is (`Topology`), and the six-node Cluster of tests/support/cluster.py."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from service.broker.envelope import ENVELOPE_SECRET_KEY

from ._procs import owners_of_ports, tcp_bytes_sent
from ._redis import info_raw
from .publishers import Batch, ScriptFeed, _Replies, bulk, resp
from .report_scaleout import Config, resp_size

Nodes = list[tuple[str, int]]


class CountingFeed(ScriptFeed):
    """`ScriptFeed` that counts the bytes of the replies it gets (what Redis sent to it), and
    connects ahead of a measured window (its setup calls stay out of it)."""

    def __init__(self, redis_url: str, rooms: Sequence[str]) -> None:
        super().__init__(redis_url, rooms)
        self.reply_bytes = 0

    async def connect(self) -> None:
        self.conn = await self._connect()

    async def send(self, batch: Batch) -> None:
        await super().send(batch)
        assert self.conn is not None
        self.reply_bytes += sum(resp_size(r) for r in self.conn.replies)


class ClusterFeed:
    """The Cluster's publish script (SPUBLISH on the room's shard channel) on each room's
    primary, one raw connection per primary; a tick's logs pipelined per node, the nodes in
    parallel. Counts its reply bytes as `CountingFeed`."""

    name = "cluster script"

    def __init__(self, seeds: Nodes, rooms: Sequence[str]) -> None:
        self.seeds = seeds
        self.rooms = list(rooms)
        self.conns: list[_Replies] = []
        self.node_of: list[int] = []  # room index -> index into conns
        self.heads: list[bytes] = []
        self.reply_bytes = 0

    async def connect(self) -> None:
        from service.broker.keys import TAGGED  # type: ignore[attr-defined,unused-ignore]
        from service.broker.script import (  # type: ignore[attr-defined,unused-ignore]
            SHARDED_PUBLISH_SCRIPT,
        )
        from service.settings import Settings

        host, port = self.seeds[0]
        client = RedisCluster(host=host, port=port, protocol=2)
        try:
            await client.initialize()
            await client.set(ENVELOPE_SECRET_KEY, secrets.token_hex(16), nx=True)
            secret = await client.get(ENVELOPE_SECRET_KEY)
            nodes: dict[tuple[str, int], int] = {}
            for room in self.rooms:
                found = client.get_node_from_key(TAGGED.channel(room))
                assert found is not None
                where = (str(found.host), int(found.port))
                self.node_of.append(nodes.setdefault(where, len(nodes)))
        finally:
            await client.aclose()
        assert isinstance(secret, bytes)
        loop = asyncio.get_running_loop()
        shas: list[bytes] = []
        for host, port in nodes:
            _, conn = await loop.create_connection(_Replies, host, port)
            (sha,) = await conn.call(resp(b"SCRIPT", b"LOAD", SHARDED_PUBLISH_SCRIPT.encode()), 1)
            assert isinstance(sha, bytes)
            self.conns.append(conn)
            shas.append(sha)
        d = Settings()
        limits = (b"%d" % d.history_max, b"%d" % d.history_ttl, secret)
        for room, index in zip(self.rooms, self.node_of, strict=True):
            keys = (TAGGED.history(room).encode(), TAGGED.channel(room).encode())
            self.heads.append(b"*9\r\n" + bulk(b"EVALSHA", shas[index], b"2", *keys, *limits))

    async def send(self, batch: Batch) -> None:
        by_node: dict[int, list[bytes]] = {}
        for room, log in batch:
            by_node.setdefault(self.node_of[room], []).append(
                b"%b$%d\r\n%b\r\n" % (self.heads[room], len(log), log)
            )
        replies = await asyncio.gather(
            *(self.conns[n].call(b"".join(c), len(c)) for n, c in by_node.items())
        )
        self.reply_bytes += sum(resp_size(r) for rs in replies for r in rs)

    async def close(self) -> None:
        for conn in self.conns:
            if conn.transport is not None:
                conn.transport.close()


@dataclass
class Totals:
    """Redis counters at one moment, over the nodes."""

    out: list[int]  # each node's total_net_output_bytes
    repl: int  # total_net_repl_output_bytes
    cpu: float  # used_cpu_user + used_cpu_sys
    calls: dict[str, int]  # INFO commandstats: calls per command
    reply: int  # the bytes of these INFO replies themselves


async def redis_totals(nodes: Nodes) -> Totals:
    t = Totals([], 0, 0.0, {}, 0)
    for host, port in nodes:
        info, size = await info_raw(port, "stats", "cpu", "commandstats", host=host)
        t.out.append(int(info["total_net_output_bytes"]))
        t.repl += int(info.get("total_net_repl_output_bytes", 0))
        t.cpu += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        t.reply += size
        for key, value in info.items():
            if key.startswith("cmdstat_") and key != "cmdstat_info":
                calls = int(value.split(",", 1)[0].removeprefix("calls="))
                name = key.removeprefix("cmdstat_")
                t.calls[name] = t.calls.get(name, 0) + calls
    return t


Sub = tuple[tuple[int, int], int, int, int]  # ((node port, client port), psub, sub, ssub)


async def subscriptions(nodes: Nodes) -> list[Sub]:
    """Every pub/sub connection on `nodes`, from CLIENT LIST (per subscriber, where PUBSUB
    NUMPAT counts distinct patterns)."""
    out: list[Sub] = []
    for host, port in nodes:
        client = aioredis.Redis(host=host, port=port, protocol=2)
        try:
            raw = await client.execute_command("CLIENT", "LIST", "TYPE", "pubsub")  # type: ignore[no-untyped-call]
        finally:
            await client.aclose()
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        for entry in text.splitlines():
            f = dict(part.split("=", 1) for part in entry.split() if "=" in part)
            where = (port, int(f["addr"].rsplit(":", 1)[1]))
            out.append((where, int(f["psub"]), int(f["sub"]), int(f.get("ssub", 0))))
    return out


def held(c: Config, gateways: Sequence[Sequence[int]], subs: Sequence[Sub]) -> None:
    """The subscriptions in all, and each gateway's (`gateways`: each one's pids; its process
    found by the socket)."""
    c.patterns = sum(s[1] for s in subs)
    c.channels = sum(s[2] for s in subs)
    c.shard_channels = sum(s[3] for s in subs)
    owners = owners_of_ports([p for g in gateways for p in g], {s[0][1] for s in subs})
    index = {pid: i for i, g in enumerate(gateways) for pid in g}
    c.gateway_subs = [[0, 0, 0] for _ in gateways]
    for (_, where), *counts in subs:
        if (pid := owners.get(where)) is not None:
            for k, n in enumerate(counts):
                c.gateway_subs[index[pid]][k] += n
    if c.topology == "redis":
        c.shard_channels = -1
        if c.mode == "rooms" and c.channels == 0:
            c.note = "not in effect: no room subscriptions (this build ignores it)"
        elif c.mode == "rooms" and c.patterns:
            c.note = (
                "pattern subscriptions beside the rooms' (the plain PUBLISH keepers): each gets "
                "every log"
            )


def sent_by_connection(nodes: Nodes) -> dict[tuple[int, int], int] | None:
    """(node port, client port) -> bytes Redis has sent on that connection (tcp_info)."""
    out: dict[tuple[int, int], int] = {}
    for _, port in nodes:
        sent = tcp_bytes_sent(port)
        if sent is None:
            return None
        out.update({(port, peer): n for peer, n in sent.items()})
    return out


def split_bytes(
    c: Config,
    gateways: Sequence[Sequence[int]],
    subs: Sequence[Sub],
    before: dict[tuple[int, int], int],
    after: dict[tuple[int, int], int],
) -> None:
    """What Redis sent on each connection over the window, by subscription kind and by
    gateway: pattern-only subscribers (pattern mode's, the keepers) apart from room ones."""
    delta = {k: n - before.get(k, 0) for k, n in after.items()}
    kinds = {where: "pattern" if psub and not (sub or ssub) else "room"
             for where, psub, sub, ssub in subs}  # fmt: skip
    c.pattern_sub_bytes = sum(n for k, n in delta.items() if kinds.get(k) == "pattern")
    c.room_sub_bytes = sum(n for k, n in delta.items() if kinds.get(k) == "room")
    owners = owners_of_ports([p for g in gateways for p in g], {k[1] for k in delta})
    index = {pid: i for i, g in enumerate(gateways) for pid in g}
    c.gateway_in_bytes = [0] * len(gateways)
    for (_, peer), n in delta.items():
        if (pid := owners.get(peer)) is not None:
            c.gateway_in_bytes[index[pid]] += n


class Topology:
    """Where the gateways' Redis is: its nodes, the gateways' settings, the feed, a flush."""

    def __init__(self, name: str, nodes: Nodes, redis_url: str, seeds: str = "") -> None:
        self.name = name
        self.nodes = nodes  # every node INFO is read from
        self.redis_url = redis_url
        self.seeds = seeds

    def feed(self, rooms: Sequence[str]) -> CountingFeed | ClusterFeed:
        if self.seeds:
            return ClusterFeed(self.nodes, rooms)
        return CountingFeed(self.redis_url, rooms)

    async def flush(self) -> None:
        for host, port in self.nodes:
            client = aioredis.Redis(host=host, port=port, protocol=2)
            try:
                if (await client.info("replication"))["role"] == "master":
                    await client.flushall()
            finally:
                await client.aclose()


def cluster_missing() -> str | None:
    """Why the Cluster cannot run from this tree, or None."""
    if importlib.util.find_spec("service.broker.cluster") is None:
        return "no Cluster broker in this build (service/broker/cluster.py)"
    if importlib.util.find_spec("tests.support.cluster") is None:
        return "no tests/support/cluster.py in this tree"
    return None


async def with_cluster(
    args: argparse.Namespace, body: Callable[[Topology], Awaitable[None]]
) -> None:
    """Start the six-node cluster of tests/support/cluster.py, its nodes pinned to the client
    core, run `body` on it, stop it."""
    from tests.support.cluster import (  # type: ignore[import-not-found,unused-ignore]
        RedisClusterProcesses,
    )

    cluster = RedisClusterProcesses()
    try:
        await asyncio.to_thread(cluster.start)
        for node in cluster.nodes:
            if args.client_cpu is not None and node.proc is not None:
                os.sched_setaffinity(node.proc.pid, {args.client_cpu})
        await body(Topology("cluster", cluster.addresses, "", cluster.seeds))
    finally:
        await asyncio.to_thread(cluster.stop)
