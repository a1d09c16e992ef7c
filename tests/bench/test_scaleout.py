"""bench.scaleout's pure parts: the nginx-style ring and the partition, the RESP reply sizes,
the figures of a configuration (bytes per log, the other-room estimate), the Markdown from a
fixed sample, the JSON round trip and the flags. No processes, no Redis."""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Any

import hiredis
import orjson

from bench._procs import bytes_sent_of
from bench.publishers import resp
from bench.report_scaleout import (
    POINTS_PER_SERVER,
    Config,
    Ring,
    config_of,
    foreign_us,
    markdown,
    own_room_us,
    partition,
    resp_size,
    server_name,
)
from bench.results import json_safe
from bench.scaleout import parse_args, render

ROOMS = [f"room-{i:04d}" for i in range(1000)]


def test_the_ring_has_nginx_points_chained_by_crc32() -> None:
    ring = Ring(["10.0.0.1:8080"])
    assert len(ring.hashes) == POINTS_PER_SERVER
    first = zlib.crc32(b"10.0.0.1\x008080" + (0).to_bytes(4, "little"))
    second = zlib.crc32(b"10.0.0.1\x008080" + first.to_bytes(4, "little"))
    assert {first, second} <= set(ring.hashes)
    assert all(ring.owner(room) == 0 for room in ROOMS[:50])


def test_a_key_goes_to_the_first_point_at_or_after_its_hash_wrapping() -> None:
    ring = Ring([server_name(i) for i in range(4)])
    for room in ROOMS[:200]:
        h = zlib.crc32(room.encode())
        after = [p for p in ring.hashes if p >= h]
        point = min(after) if after else ring.hashes[0]
        assert ring.owner(room) == ring.owners[ring.hashes.index(point)]


def test_partition_covers_every_room_once_and_spreads_them() -> None:
    for gateways in (1, 2, 4, 8):
        parts = partition(ROOMS, gateways)
        assert sorted(i for p in parts for i in p) == list(range(len(ROOMS)))
        fair = len(ROOMS) / gateways
        assert all(0.5 * fair < len(p) < 1.5 * fair for p in parts), [len(p) for p in parts]


def test_a_gateway_added_takes_rooms_only_from_the_others() -> None:
    """Consistent hashing: going from 4 to 5 gateways moves rooms to the new one only."""
    four = Ring([server_name(i) for i in range(4)])
    five = Ring([server_name(i) for i in range(5)])
    moved = [r for r in ROOMS if four.owner(r) != five.owner(r)]
    assert moved
    assert all(five.owner(r) == 4 for r in moved)
    assert len(moved) < len(ROOMS) / 2


def test_reply_sizes_are_the_bytes_redis_wrote() -> None:
    wire = (
        b"*1\r\n$15\r\n1764000000000-0\r\n"
        + b"$2\r\nOK\r\n"
        + b":42\r\n"
        + b"$-1\r\n"
        + resp(b"a", b"bc")
    )
    reader = hiredis.Reader()
    reader.feed(wire)
    replies = []
    while (reply := reader.gets()) is not False:
        replies.append(reply)
    assert len(replies) == 5
    assert sum(resp_size(r) for r in replies) == len(wire)


def config(mode: str, gateways: int, **fields: Any) -> Config:
    sent = 16_000
    own = [sent // gateways] * gateways
    cpu = 0.8 if mode == "rooms" else 0.8 + 0.2 * (gateways - 1)
    values: dict[str, Any] = {
        "rooms": 1000,
        "per_room": 2,
        "rate": 2000.0,
        "rooms_per_gateway": [1000 // gateways] * gateways,
        "sent": sent,
        "publish_rate": 1999.0,
        "complete": True,
        "wall_s": 8.0,
        "patterns": gateways if mode == "pattern" else 0,
        "channels": 0 if mode == "pattern" else 1000,
        "redis_out_bytes": 400 * sent * (gateways if mode == "pattern" else 1) + 26 * sent,
        "publisher_bytes": 26 * sent,
        "redis_cpu_s": sent * (20 + (5 * gateways if mode == "pattern" else 5)) / 1e6,
        "gateway_cpu_s": [cpu / gateways + 0.01 * 8.0] * gateways,
        "gateway_idle_core": [0.01] * gateways,
        "own_logs": own,
        "pattern_sub_bytes": 400 * sent * gateways if mode == "pattern" else 0,
        "room_sub_bytes": 0 if mode == "pattern" else 400 * sent,
        "gateway_in_bytes": [400 * sent if mode == "pattern" else 400 * sent // gateways]
        * gateways,
        "gateway_subs": [[1, 0, 0] if mode == "pattern" else [0, 1000 // gateways, 0]] * gateways,
        **fields,
    }
    return Config("redis", mode, gateways, **values)


def sample() -> list[Config]:
    return [config(m, g) for g in (1, 8) for m in ("pattern", "rooms")]


def test_bytes_and_cpu_per_log() -> None:
    one, _, eight, eight_rooms = sample()
    assert one.bytes_per_log == 400
    assert eight.bytes_per_log == 3200
    assert eight_rooms.bytes_per_log == 400
    assert math.isclose(one.gateways_us_per_log, 50.0)  # 0.8 s over 16,000 logs, idle out
    assert math.isclose(one.redis_us_per_log, 25.0)


def test_other_room_logs_cost_what_is_left_after_the_own_rooms() -> None:
    configs = sample()
    one, _, eight, eight_rooms = configs
    # pattern: 0.2 s per extra gateway over 7 x 16,000 other-room logs in all
    assert math.isclose(foreign_us(eight, configs), 0.2 * 7 * 1e6 / (7 * 16_000))
    assert math.isclose(foreign_us(eight_rooms, configs), 0.0, abs_tol=1e-9)
    assert math.isnan(foreign_us(one, configs))


def test_own_room_cost_from_the_rooms_gateways_that_hold_no_pattern() -> None:
    configs = sample()
    eight, eight_rooms = configs[2], configs[3]
    # a keeper: one rooms-mode gateway also holds a pattern and spends 0.16 s more
    eight_rooms.gateway_subs[0] = [1, 125, 0]
    eight_rooms.gateway_cpu_s[0] += 0.16
    assert own_room_us(eight, configs) == (50.0, "rooms gateways without a pattern")
    assert math.isclose(foreign_us(eight_rooms, configs), 0.16 * 1e6 / (7 * 16_000))
    assert own_room_us(eight, configs[:3]) == (50.0, "one gateway")


def test_markdown_from_a_fixed_sample() -> None:
    configs = sample()
    configs[1].note = "not in effect: the gateways hold PSUBSCRIBE (this build ignores it)"
    text = markdown(configs, "pinned")
    assert "### One Redis: 1,000 rooms x 2 streams, 2,000 logs/s round-robin" in text
    assert (
        "| pattern | 8 | 125 | 16,000 (1,999) | yes | 8 psub, 0 sub | 3,200 | 8.00x | 3,200 / 0 |"
        in text
    )
    assert (
        "| rooms | 8 | 125 | 16,000 (1,999) | yes | 0 psub, 1000 sub | 400 | 1.00x | 0 / 400 |"
        in text
    )
    assert "redis-pattern-8 3,200 vs 3,200; redis-rooms-8 400 vs 400." in text
    assert "| rooms (*) | 1 |" in text
    assert "| rooms | 8 | 125 |" in text
    assert "| 400 | 1.00x |" in text
    assert "(*) rooms: not in effect" in text
    assert "pattern, 8 gateway(s): 8.00 deliveries per log" in text
    assert "81,250 logs/s" in text  # 650,000 / 8
    assert "Redis Cluster" not in text
    assert "| redis | pattern | 8 of 8 | 125 | 2,000 | 1 / 0 / 0 | 400 | 0.28 | 137.5 |" in text
    assert "| redis | rooms | 8 of 8 | 125 | 2,000 | 0 / 125 / 0 | 50 | 0.10 | 50.0 |" in text


def test_a_config_survives_the_json() -> None:
    for c in sample():
        back = config_of(orjson.loads(orjson.dumps(json_safe(asdict(c)))))
        assert back == c


def test_flags() -> None:
    quick = parse_args(["--quick"])
    assert (quick.gateways, quick.per_room, quick.seconds) == ([1, 8], 1, 4.0)
    full = parse_args([])
    assert (full.gateways, full.per_room, full.seconds, full.rate) == ([1, 2, 4, 8], 2, 8.0, 2000)
    assert full.modes == ["pattern", "rooms"]
    assert full.cluster_gateways == [1, 4]
    assert parse_args(["--cluster-gateways", "0"]).cluster_gateways == []


def test_render_reads_results_and_keeps_a_configuration_once(tmp_path: Path) -> None:
    configs = sample()
    cluster = config("pattern", 4)
    cluster.topology = "cluster"

    def doc(chosen: list[Config], commit: str) -> dict[str, Any]:
        return {
            "command": "python -m bench.scaleout",
            "started": "20261203T000000Z",
            "environment": {"git_commit": commit},
            "pinning": "pinned",
            "configs": [asdict(c) for c in chosen],
        }

    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_bytes(orjson.dumps(json_safe(doc(configs, "c580cc8777aa"))))
    second.write_bytes(orjson.dumps(json_safe(doc([configs[0], cluster], ""))))
    text = render([first, second])
    assert text.count("| pattern | 1 | 1000 |") == 1
    assert "### Redis Cluster, 3 shards" in text
    assert "(commit c580cc8777); " in text
    assert text.endswith("(commit n/a: not a git tree).")


def test_bytes_sent_from_ss_lines() -> None:
    text = (
        "0      0      127.0.0.1:62289 127.0.0.1:44124 bbr wscale:10,10 rto:204 mss:48640 "
        "bytes_sent:48272 bytes_acked:48272 bytes_received:48584 segs_out:20\n"
        "0      0      127.0.0.1:62289 127.0.0.1:44160 bbr wscale:10,10 bytes_received:9\n"
        "garbage\n"
    )
    assert bytes_sent_of(text) == {44124: 48272, 44160: 0}
