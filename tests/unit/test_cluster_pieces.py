"""What the Cluster broker reuses, without a cluster: the hash-tagged key space beside the
plain one, the sharded variants of the scripts, and the buffered-reply walk that stops at a
shard (un)subscribe."""

from __future__ import annotations

import hiredis
import pytest
from redis._parsers.hiredis import NOT_ENOUGH_DATA
from redis.crc import key_slot
from redis.exceptions import ResponseError

from service.broker import _batch_read, create_broker
from service.broker.keys import PLAIN, TAGGED, room_from_channel
from service.broker.script import (
    PERMISSIONS_SCRIPT,
    PLAIN_SCRIPT,
    PUBLISH_SCRIPT,
    SHARDED_PERMISSIONS_SCRIPT,
    SHARDED_PLAIN_SCRIPT,
    SHARDED_PUBLISH_SCRIPT,
    sharded,
)
from service.delivery import Delivery
from service.hub import Hub
from service.metrics import Metrics
from service.settings import SettingsError
from tests.support.factories import settings


def test_a_rooms_tagged_keys_share_one_slot_and_the_classic_channel_stays() -> None:
    room = "550e8400-e29b-41d4-a716-446655440000"
    names = [TAGGED.history(room), TAGGED.channel(room), TAGGED.publish(room, "k1")]
    assert names == [
        f"room:{{{room}}}:history",
        f"room:{{{room}}}:logs",
        f"room:{{{room}}}:publish:k1",
    ]
    assert len({key_slot(n.encode()) for n in [*names, TAGGED.plain(room, "ab")]}) == 1
    # The plain key space is v1's, unchanged; both know the classic channel by one name.
    assert PLAIN.channel(room) == PLAIN.classic(room) == TAGGED.classic(room) == f"room:{room}:logs"
    assert PLAIN.history(room) == f"room:{room}:history"
    assert room_from_channel(TAGGED.channel(room).encode()) == room
    assert TAGGED.pattern == PLAIN.pattern == "room:*:logs"
    with pytest.raises(ValueError, match="invalid room id"):
        TAGGED.classic("a{b}")


@pytest.mark.parametrize(
    ("script", "variant"),
    [
        (PUBLISH_SCRIPT, SHARDED_PUBLISH_SCRIPT),
        (PLAIN_SCRIPT, SHARDED_PLAIN_SCRIPT),
        (PERMISSIONS_SCRIPT, SHARDED_PERMISSIONS_SCRIPT),
    ],
)
def test_sharded_scripts_spublish_and_differ_in_nothing_else(script: str, variant: str) -> None:
    assert variant.count("'SPUBLISH'") == 1
    assert "'PUBLISH'" not in variant
    assert variant.replace("'SPUBLISH'", "'PUBLISH'") == script


def test_sharded_refuses_a_script_without_exactly_one_publish() -> None:
    with pytest.raises(ValueError, match="exactly one PUBLISH"):
        sharded("return 1")


def _reply(*parts: bytes) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%b\r\n" % (len(p), p) for p in parts)


def test_buffered_shard_messages_stop_at_a_pushed_sunsubscribe() -> None:
    reader = hiredis.Reader(notEnoughData=NOT_ENOUGH_DATA, replyError=ResponseError)
    reader.feed(_reply(b"smessage", b"room:{a}:logs", b"one"))
    reader.feed(_reply(b"message", b"room:b:logs", b"two"))
    reader.feed(b"*3\r\n$12\r\nsunsubscribe\r\n$13\r\nroom:{a}:logs\r\n:0\r\n")
    reader.feed(_reply(b"smessage", b"room:{c}:logs", b"three"))
    batch: list[tuple[bytes, bytes]] = []
    control = _batch_read.take_until_control(reader, batch)
    assert batch == [(b"room:{a}:logs", b"one"), (b"room:b:logs", b"two")]
    assert control == [b"sunsubscribe", b"room:{a}:logs", 0]
    assert _batch_read.take_until_control(reader, batch) is None
    assert batch[-1] == (b"room:{c}:logs", b"three")
    # The one-Redis reader's question is unchanged: only a (p)subscribe stops it with True.
    reader.feed(b"*3\r\n$10\r\nssubscribe\r\n$13\r\nroom:{a}:logs\r\n:1\r\n")
    assert _batch_read.take_buffered(reader, []) is False


def test_publish_replicas_is_refused_on_a_cluster_not_ignored() -> None:
    """WAIT would have to run on the connection that ran the script: not in this build."""
    config = settings(redis_cluster_nodes=(("127.0.0.1", 7000),), publish_replicas=1)
    with pytest.raises(SettingsError, match="PUBLISH_REPLICAS"):
        create_broker(config, Delivery(Hub(), Metrics(), config.max_message_bytes))
