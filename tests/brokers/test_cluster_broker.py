"""The Cluster broker on a real six-node Redis Cluster (one per module): a room's keys are
hash-tagged into one slot, publish runs the sharded script on that slot's primary, history
reads back from it, live delivery is SSUBSCRIBE per room on each primary, and a plain PUBLISH
on the classic channel (to any node) is stored and delivered with its id."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from service.broker import BrokerState, BrokerUnavailable, PublishOutcomeUnknown, Window
from service.broker import cluster as cluster_broker
from service.broker.cluster import ClusterBroker
from service.broker.cluster_reader import NotPrimary, Session
from service.broker.cluster_slots import SlotMap
from service.broker.keys import TAGGED
from service.broker.script import Published
from tests.brokers.test_contract import (
    test_history_and_last_are_oldest_first,
    test_publish_returns_monotonic_stream_ids,
    test_resume_reads_what_window_and_history_read,
    test_window_of_an_empty_room,
    test_window_says_when_a_last_id_points_before_trimmed_logs,
    test_window_spans_what_history_holds,
)
from tests.support.aio import poll_until
from tests.support.brokers import Running, StartBroker, logs, receive
from tests.support.cluster import RedisClusterProcesses

# The broker contract's tests that need no live delivery, run here on the cluster (through
# `start_kind` below); live delivery waits for a room's SSUBSCRIBE: tested below, with it.
__all__ = [
    "test_history_and_last_are_oldest_first",
    "test_publish_returns_monotonic_stream_ids",
    "test_resume_reads_what_window_and_history_read",
    "test_window_of_an_empty_room",
    "test_window_says_when_a_last_id_points_before_trimmed_logs",
    "test_window_spans_what_history_holds",
]

pytestmark = pytest.mark.process


@pytest.fixture
async def direct(cluster: RedisClusterProcesses) -> AsyncIterator[RedisCluster]:
    """A plain redis-py cluster client: what a foreign backend or an operator would use."""
    client = RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in cluster.addresses])
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def start_cluster(cluster: RedisClusterProcesses, start_broker: StartBroker) -> StartBroker:
    async def start(**kw: Any) -> Running:
        kw.setdefault("redis_cluster_nodes", tuple(cluster.addresses))
        return await start_broker(**kw)

    return start


@pytest.fixture
def start_kind(start_cluster: StartBroker) -> StartBroker:
    """The contract tests' broker: here, always the Cluster's."""
    return start_cluster


async def test_publish_and_history_on_the_rooms_slot(
    start_cluster: StartBroker, cluster: RedisClusterProcesses, direct: RedisCluster
) -> None:
    run = await start_cluster()
    assert isinstance(run.broker, ClusterBroker)
    for room in cluster.rooms_on_every_primary():
        data = logs(5)
        ids = await run.broker.publish(room, data)
        assert len(ids) == 5
        everything = list(zip(ids, data, strict=True))
        assert await run.broker.history(room, None, 100) == everything
        assert await run.broker.history(room, ids[1], 2) == everything[2:4]
        assert await run.broker.last(room, 2) == everything[-2:]
        assert await run.broker.window(room) == Window(ids[0], ids[-1], trimmed=False)
        # The hash-tagged names, braces literal; the v1 names stay unused.
        assert await direct.xlen(f"room:{{{room}}}:history") == 5
        assert await direct.exists(f"room:{room}:history") == 0
        assert 0 < await direct.ttl(f"room:{{{room}}}:history") <= 86400


async def test_publish_once_replays_on_the_cluster(
    start_cluster: StartBroker, cluster: RedisClusterProcesses, direct: RedisCluster
) -> None:
    run = await start_cluster()
    room = cluster.rooms_on_every_primary()[0]
    first = await run.broker.publish_once(room, logs(2), "key-1", "fp")
    again = await run.broker.publish_once(room, logs(2), "key-1", "fp")
    assert not first.replayed
    assert again.replayed
    assert again.ids == first.ids
    assert await direct.exists(f"room:{{{room}}}:publish:key-1") == 1
    assert len(await run.broker.history(room, None, 10)) == 2


@contextlib.asynccontextmanager
async def _replica_paused(cluster: RedisClusterProcesses, room: str) -> AsyncIterator[None]:
    """SIGSTOP of the replica of `room`'s primary (no failover: only primaries fail over);
    resumed, and the cluster healthy again, for the module's later tests."""
    slot = key_slot(TAGGED.channel(room).encode())
    replica = cluster.replica_of(cluster.node(_owner_port(cluster, slot)))
    replica.pause()
    try:
        yield
    finally:
        replica.resume()
        await asyncio.to_thread(cluster.wait_ok)


async def test_publish_replicas_waits_for_the_rooms_replica(
    start_cluster: StartBroker, cluster: RedisClusterProcesses
) -> None:
    """PUBLISH_REPLICAS=1: WAIT runs on the connection of the room's primary that ran the
    script, so a stalled replica of that shard makes the publish an unknown outcome (504); once
    it is back, the retry with the same key replays the stored logs, acknowledged."""
    run = await start_cluster(publish_replicas=1, publish_replicas_timeout_ms=200)
    broker = run.broker
    for room in cluster.rooms_on_every_primary():  # every shard's replica acknowledges
        assert len((await broker.publish_once(room, logs(1), "warm", "fp")).ids) == 1
    room = cluster.rooms_on_every_primary()[0]
    async with _replica_paused(cluster, room):
        with pytest.raises(PublishOutcomeUnknown, match="PUBLISH_REPLICAS"):
            await broker.publish_once(room, logs(2), "k1", "fp")
        stored = await broker.history(room, None, 10)  # on the primary all the same
    assert [d for _, d in stored] == logs(2)

    answers: list[Published] = []

    async def acknowledged() -> bool:  # the publisher's retry, with the same key
        with contextlib.suppress(PublishOutcomeUnknown):
            answers.append(await broker.publish_once(room, logs(2), "k1", "fp"))
        return bool(answers)

    await poll_until(acknowledged, timeout=10, interval=0.05)
    [again] = answers
    assert again.replayed
    assert again.ids == [i for i, _ in stored]
    assert await broker.history(room, None, 10) == stored


async def test_publish_replicas_on_other_shards_meanwhile(
    start_cluster: StartBroker, cluster: RedisClusterProcesses
) -> None:
    """One shard's stalled replica holds up that shard's publishes only."""
    run = await start_cluster(publish_replicas=1, publish_replicas_timeout_ms=200)
    stalled, *others = cluster.rooms_on_every_primary()
    async with _replica_paused(cluster, stalled):
        with pytest.raises(PublishOutcomeUnknown):
            await run.broker.publish(stalled, logs(1))
        for room in others:
            ids = await run.broker.publish(room, logs(3))
            assert [i for i, _ in await run.broker.history(room, None, 10)] == ids


async def test_publish_replicas_follows_a_failover_and_drops_the_old_primarys_client(
    start_cluster: StartBroker, cluster: RedisClusterProcesses
) -> None:
    """CLUSTER FAILOVER: the old primary turns replica of the promoted one, so the retried
    publish is acknowledged there; the broker's client of the old primary is closed."""
    run = await start_cluster(publish_replicas=1)
    broker = run.broker
    assert isinstance(broker, ClusterBroker)
    room = cluster.rooms_on_every_primary()[0]
    primary = cluster.node(_owner_port(cluster, key_slot(TAGGED.channel(room).encode())))
    replica = cluster.replica_of(primary)
    first = await broker.publish_once(room, logs(1), "f0", "fp")
    assert ("127.0.0.1", primary.port) in broker._node_clients
    await asyncio.to_thread(replica.cli, "CLUSTER", "FAILOVER")
    answers: list[Published] = []

    async def moved_on() -> bool:  # a publisher's retries, with the same key
        with contextlib.suppress(BrokerUnavailable, PublishOutcomeUnknown):
            answers.append(await broker.publish_once(room, logs(1, 1), "f1", "fp"))
        return bool(answers) and ("127.0.0.1", primary.port) not in broker._node_clients

    await poll_until(moved_on, timeout=15, interval=0.05)
    assert ("127.0.0.1", replica.port) in broker._node_clients
    assert await broker.history(room, None, 10) == list(
        zip(first.ids + answers[0].ids, logs(2), strict=True)
    )
    await asyncio.to_thread(cluster.wait_ok)


async def test_live_delivery_from_every_primary(
    start_cluster: StartBroker, cluster: RedisClusterProcesses
) -> None:
    run = await start_cluster()
    rooms = cluster.rooms_on_every_primary(per_primary=2)
    subs = {room: run.watch(room) for room in rooms}
    async with asyncio.timeout(10):
        await run.broker.listening(rooms)  # every SSUBSCRIBE confirmed
    published = {room: await run.broker.publish(room, logs(3)) for room in rooms}
    for room, sub in subs.items():
        events = await receive(sub, 3)
        assert [e.last_event_id for e in events] == published[room]
        assert [orjson.loads(e.data)["message"] for e in events] == ["log 0", "log 1", "log 2"]


async def test_readiness_waits_for_every_primary(start_cluster: StartBroker) -> None:
    run = await start_cluster()
    broker = run.broker
    assert isinstance(broker, ClusterBroker)
    assert broker.state is BrokerState.LIVE
    assert len(broker._sessions) == 3
    assert all(s.live for s in broker._sessions.values())
    assert broker._classic is not None
    assert broker._classic.live


async def test_plain_publish_on_any_node_is_stored_and_delivered(
    start_cluster: StartBroker, cluster: RedisClusterProcesses, direct: RedisCluster
) -> None:
    run = await start_cluster()
    rooms = cluster.rooms_on_every_primary()
    subs = {room: run.watch(room) for room in rooms}
    async with asyncio.timeout(10):
        await run.broker.listening(rooms)
    for node, room in zip(cluster.nodes[3:], rooms, strict=True):
        # A foreign backend's bare PUBLISH, on the classic channel, to some node (maybe a
        # replica): the cluster bus carries it to the one classic subscription.
        async with aioredis.Redis(port=node.port) as plain:
            await plain.publish(f"room:{room}:logs", orjson.dumps({"message": f"plain {room}"}))
    for room, sub in subs.items():
        [event] = await receive(sub, 1)
        assert event.last_event_id is not None
        assert orjson.loads(event.data)["message"] == f"plain {room}"
        stored = await run.broker.history(room, None, 10)
        assert [i for i, _ in stored] == [event.last_event_id]
        assert await direct.xlen(f"room:{{{room}}}:history") == 1


def _node_ids(cluster: RedisClusterProcesses) -> dict[int, str]:
    ids = {}
    for line in cluster.nodes[0].cli("CLUSTER", "NODES").splitlines():
        fields = line.split()
        ids[int(fields[1].split("@")[0].split(":")[1])] = fields[0]
    return ids


def _owner_port(cluster: RedisClusterProcesses, slot: int) -> int:
    for node in cluster.primaries():
        if _serves(node.port, slot, cluster):
            return node.port
    raise LookupError(slot)


def _serves(port: int, slot: int, cluster: RedisClusterProcesses) -> bool:
    for line in cluster.node(port).cli("CLUSTER", "NODES").splitlines():
        fields = line.split()
        if "myself" in fields[2]:
            for span in fields[8:]:
                a, _, b = span.partition("-")
                if span[0] != "[" and int(a) <= slot <= int(b or a):
                    return True
    return False


def migrate_slot(cluster: RedisClusterProcesses, slot: int, source: int, target: int) -> None:
    """Move `slot` with its keys from the primary on port `source` to the one on `target`, the
    way `redis-cli --cluster reshard` does: IMPORTING, MIGRATING, MIGRATE, SETSLOT NODE."""
    ids = _node_ids(cluster)
    src, dst = cluster.node(source), cluster.node(target)
    dst.cli("CLUSTER", "SETSLOT", str(slot), "IMPORTING", ids[source])
    src.cli("CLUSTER", "SETSLOT", str(slot), "MIGRATING", ids[target])
    while keys := src.cli("CLUSTER", "GETKEYSINSLOT", str(slot), "100").split():
        src.cli("MIGRATE", "127.0.0.1", str(target), "", "0", "5000", "KEYS", *keys)
    for node in (dst, src, *cluster.primaries()):
        node.cli("CLUSTER", "SETSLOT", str(slot), "NODE", ids[target])


async def test_a_migrated_slot_is_followed_with_nothing_lost(
    start_cluster: StartBroker, cluster: RedisClusterProcesses
) -> None:
    """Redis pushes `sunsubscribe` when the room's slot leaves its primary: the broker reads
    the slot map again, SSUBSCRIBEs on the new owner and catches the room up from history."""
    run = await start_cluster()
    room = cluster.rooms_on_every_primary()[0]
    slot = key_slot(TAGGED.channel(room).encode())
    source = _owner_port(cluster, slot)
    target = next(n.port for n in cluster.primaries() if n.port != source)
    sub = run.watch(room)
    async with asyncio.timeout(10):
        await run.broker.listening([room])
    before = await run.broker.publish(room, logs(3))
    assert [e.last_event_id for e in await receive(sub, 3)] == before
    await asyncio.to_thread(migrate_slot, cluster, slot, source, target)
    after = await run.broker.publish(room, logs(3, 3))  # redis-py follows MOVED
    events = await receive(sub, 3)
    assert [e.last_event_id for e in events] == after
    broker = run.broker
    assert isinstance(broker, ClusterBroker)
    assert broker._placed[room].addr == ("127.0.0.1", target)
    assert await broker.history(room, None, 10) == [
        (i, d) for i, d in zip(before + after, logs(6), strict=True)
    ]


async def test_a_publish_answered_moved_is_a_503_and_the_retry_lands(
    start_cluster: StartBroker, cluster: RedisClusterProcesses, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PUBLISH_REPLICAS=1 and the slot map stale (a slot moved while the broker held no room
    there, so nothing was pushed): the old owner answers the script MOVED, so it did not run,
    a 503; the map is read again and the publisher's retry lands on the new owner."""
    monkeypatch.setattr(cluster_broker, "TOPOLOGY_POLL", 60.0)  # no poll notices it first
    run = await start_cluster(publish_replicas=1)
    broker = run.broker
    assert isinstance(broker, ClusterBroker)
    room = cluster.rooms_on_every_primary()[0]
    slot = key_slot(TAGGED.channel(room).encode())
    source = _owner_port(cluster, slot)
    target = next(n.port for n in cluster.primaries() if n.port != source)
    first = await broker.publish_once(room, logs(1), "m0", "fp")
    await asyncio.to_thread(migrate_slot, cluster, slot, source, target)
    with pytest.raises(BrokerUnavailable, match="MovedError"):
        await broker.publish_once(room, logs(1, 1), "m1", "fp")
    answers: list[Published] = []

    async def landed() -> bool:
        with contextlib.suppress(BrokerUnavailable):
            answers.append(await broker.publish_once(room, logs(1, 1), "m1", "fp"))
        return bool(answers)

    await poll_until(landed, timeout=10, interval=0.05)
    assert not answers[0].replayed
    assert ("127.0.0.1", target) in broker._node_clients
    assert await broker.history(room, None, 10) == list(
        zip(first.ids + answers[0].ids, logs(2), strict=True)
    )


async def test_subscribe_mode_rooms_follows_the_classic_channel_per_room(
    start_cluster: StartBroker, cluster: RedisClusterProcesses, direct: RedisCluster
) -> None:
    """SUBSCRIBE_MODE=rooms: the classic channel by one SUBSCRIBE per watched room, confirmed
    before the stream's replay; a plain PUBLISH to a room nobody here watches is not taken."""
    run = await start_cluster(subscribe_mode="rooms", unsubscribe_linger=0.0)
    broker = run.broker
    assert isinstance(broker, ClusterBroker)
    watched, unwatched, *_ = cluster.rooms_on_every_primary()
    sub = run.watch(watched)
    async with asyncio.timeout(10):
        await broker.listening([watched])
    assert broker._classic is not None
    assert broker._classic.kind == "rooms"
    assert watched in broker._classic.rooms
    async with aioredis.Redis(port=cluster.nodes[-1].port) as plain:
        for room in (unwatched, watched):
            await plain.publish(f"room:{room}:logs", orjson.dumps({"message": f"plain {room}"}))
    [event] = await receive(sub, 1)
    assert orjson.loads(event.data)["message"] == f"plain {watched}"
    assert await direct.xlen(f"room:{{{watched}}}:history") == 1
    assert await direct.exists(f"room:{{{unwatched}}}:history") == 0
    ids = await broker.publish(watched, logs(2))  # sharded live delivery as ever
    assert [e.last_event_id for e in await receive(sub, 2)] == ids
    broker.unsubscribe([watched])  # no linger: UNSUBSCRIBE and SUNSUBSCRIBE at once

    classic = broker._classic

    async def released() -> bool:  # both confirmations come back from Redis
        return watched not in classic.rooms and watched not in broker._placed

    await poll_until(released, timeout=5, interval=0.01)


async def test_a_stalled_primary_is_left_for_its_promoted_replica(
    start_cluster: StartBroker, cluster: RedisClusterProcesses
) -> None:
    """SIGSTOP: the stalled primary pushes nothing and resets nothing; the cluster promotes
    its replica, the broker's slot-map poll (or its liveness probe) notices, the room is
    SSUBSCRIBEd on the new primary and caught up. Publishes retry until they land there."""
    run = await start_cluster()
    broker = run.broker
    assert isinstance(broker, ClusterBroker)
    room = cluster.rooms_on_every_primary()[0]
    slot = key_slot(TAGGED.channel(room).encode())
    primary = cluster.node(_owner_port(cluster, slot))
    replica = cluster.replica_of(primary)
    sub = run.watch(room)
    async with asyncio.timeout(10):
        await broker.listening([room])
    primary.pause()
    try:
        ids: list[str] = []
        async with asyncio.timeout(30):
            for i in range(3):
                while True:  # as a publisher does: the same key until it is acknowledged
                    try:
                        ids += (await broker.publish_once(room, logs(1, i), f"k{i}", "fp")).ids
                        break
                    except (BrokerUnavailable, PublishOutcomeUnknown):
                        await asyncio.sleep(0.2)
        assert replica.info("replication")["role"] == "master"
        events = await receive(sub, 3, timeout=20)
        assert [e.last_event_id for e in events] == ids
        assert broker._placed[room].addr == ("127.0.0.1", replica.port)
    finally:
        primary.resume()
    await asyncio.to_thread(cluster.wait_ok)


async def test_an_ssubscribe_answered_moved_is_placed_on_the_new_owner(
    start_cluster: StartBroker, cluster: RedisClusterProcesses, caplog: pytest.LogCaptureFixture
) -> None:
    """The broker's slot map is stale (a slot moved while it held no room there, so nothing
    was pushed): the room's SSUBSCRIBE goes to the old owner, which answers MOVED; the session
    is given up, the map read again, and the room subscribed on the new owner before the
    stream's replay may start."""
    run = await start_cluster()
    broker = run.broker
    assert isinstance(broker, ClusterBroker)
    room = cluster.rooms_on_every_primary()[0]
    slot = key_slot(TAGGED.channel(room).encode())
    source = _owner_port(cluster, slot)
    target = next(n.port for n in cluster.primaries() if n.port != source)
    await asyncio.to_thread(migrate_slot, cluster, slot, source, target)
    sub = run.watch(room)
    async with asyncio.timeout(10):
        await broker.listening([room])
    assert broker._placed[room].addr == ("127.0.0.1", target)
    assert any("MovedError" in r.getMessage() for r in caplog.records), "not the MOVED path"
    ids = await broker.publish(room, logs(2))
    assert [e.last_event_id for e in await receive(sub, 2)] == ids


class _Recorder:
    """A `cluster_reader.SessionOwner` that keeps what a session reports."""

    def __init__(self) -> None:
        self.lost: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
        self.live = False

    def on_messages(self, batch: list[tuple[bytes, bytes]]) -> None:
        pass

    def session_live(self, session: Session) -> None:
        self.live = True

    async def room_confirmed(self, session: Session, room: str) -> None:
        pass

    def room_ended(self, session: Session, room: str, *, asked: bool) -> None:
        pass

    def session_lost(self, session: Session, exc: BaseException) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


async def test_a_shard_session_on_a_replica_subscribes_nothing(
    cluster: RedisClusterProcesses,
) -> None:
    """A slot map read from a node not yet told of a failover names the demoted primary: a
    replica would accept the SSUBSCRIBEs for its primary's slots, and miss what is published
    while its new primary does not count it in the shard yet. The session asks ROLE first and
    ends (the broker reads the map again) with nothing subscribed there."""
    primary = cluster.primaries()[0]
    replica = cluster.replica_of(primary)
    slots = SlotMap()
    slots.owners = {slot: ("127.0.0.1", primary.port) for slot in range(16384)}
    marker = slots.marker(("127.0.0.1", primary.port))
    owner = _Recorder()
    client = aioredis.Redis(port=replica.port, protocol=2)
    session = Session(("127.0.0.1", replica.port), client, "shard", marker, TAGGED, owner)
    try:
        async with asyncio.timeout(10):
            exc = await owner.lost
    finally:
        await session.close()
    assert isinstance(exc, NotPrimary), exc
    assert not owner.live
    assert replica.cli("PUBSUB", "SHARDNUMSUB", marker).split() == [marker, "0"]
