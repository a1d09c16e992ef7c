"""`bench.scaleout`'s pure parts: the room affinity (the ring nginx's `hash … consistent`
builds), a configuration's record, the derived figures (ratios to one gateway, what a gateway
spends on rooms it does not serve), the Markdown and the saturation arithmetic. No processes.

The ring is nginx's ketama (ngx_http_upstream_hash_module, `consistent`): each server of
weight 1 gets 160 points, point j being crc32(host "\\0" port prev) where prev is point j-1 as
4 little-endian bytes (0 for the first); a key goes to the first point at or after crc32(key),
wrapping around. The bench names its gateways as nginx would see them in a deployment
(`10.0.0.1:8080` …), so the partition is the same in every run, whatever the local ports.
"""

from __future__ import annotations

import bisect
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ._common import fmt
from .report import table

POINTS_PER_SERVER: Final = 160  # nginx: weight x 160
DELIVERIES_CEILING: Final = 650_000  # one Redis, deliveries/s (RESEARCH-SCALEOUT.md, cf-blog)


def server_name(index: int) -> str:
    """The upstream address of gateway `index` the ring is built from."""
    return f"10.0.0.{index + 1}:8080"


class Ring:
    """nginx's consistent-hash ring over `servers` ("host:port", weight 1 each)."""

    def __init__(self, servers: Sequence[str]) -> None:
        points: dict[int, int] = {}  # hash -> server index; nginx drops duplicate hashes too
        for index, server in enumerate(servers):
            host, _, port = server.rpartition(":")
            base = zlib.crc32(port.encode(), zlib.crc32(b"\0", zlib.crc32(host.encode())))
            prev = 0
            for _ in range(POINTS_PER_SERVER):
                prev = zlib.crc32(prev.to_bytes(4, "little"), base)
                points.setdefault(prev, index)
        self.hashes = sorted(points)
        self.owners = [points[h] for h in self.hashes]

    def owner(self, key: str) -> int:
        at = bisect.bisect_left(self.hashes, zlib.crc32(key.encode()))
        return self.owners[at % len(self.hashes)]


def partition(rooms: Sequence[str], gateways: int) -> list[list[int]]:
    """Per gateway, the indices (into `rooms`) of the rooms the ring sends to it."""
    ring = Ring([server_name(i) for i in range(gateways)])
    out: list[list[int]] = [[] for _ in range(gateways)]
    for i, room in enumerate(rooms):
        out[ring.owner(room)].append(i)
    return out


def resp_size(reply: object) -> int:
    """The bytes of a RESP2 reply as hiredis parsed it: what Redis wrote for it."""
    if isinstance(reply, bytes):
        return len(b"$%d\r\n" % len(reply)) + len(reply) + 2
    if isinstance(reply, list):
        return len(b"*%d\r\n" % len(reply)) + sum(resp_size(r) for r in reply)
    if isinstance(reply, int):
        return len(b":%d\r\n" % reply)
    if reply is None:
        return len(b"$-1\r\n")
    raise TypeError(f"no RESP size for {reply!r}")


@dataclass
class Config:
    """One configuration of the run: G gateways on one Redis or on the Cluster, one mode."""

    topology: str  # redis | cluster
    mode: str  # SUBSCRIBE_MODE: pattern | rooms
    gateways: int
    rooms: int = 0
    per_room: int = 0  # streams on each room
    rate: float = math.nan  # offered logs/s
    rooms_per_gateway: list[int] = field(default_factory=list)
    sent: int = 0
    publish_rate: float = math.nan
    complete: bool = False  # every stream got every log of its room
    behind: int = 0  # streams that did not
    extra: int = 0  # logs received beyond their room's, all streams (a log delivered twice)
    wall_s: float = math.nan  # the measured window: first send to the last delivery
    # Subscriptions the gateways hold, summed over their connections (CLIENT LIST's psub,
    # sub, ssub; over every node of a Cluster): a pattern each in pattern mode, a room each
    # with room affinity in rooms mode.
    patterns: int = -1
    channels: int = -1
    shard_channels: int = -1  # Cluster only
    gateway_subs: list[list[int]] = field(default_factory=list)  # each gateway's [psub, sub, ssub]
    # total_net_output_bytes delta minus the meter's own INFO reply and the replication stream
    redis_out_bytes: int = 0
    publisher_bytes: int = 0  # what of it went to the publisher (its replies, counted here)
    # What Redis sent on each connection (tcp_info, `ss`): to pattern-only subscribers (pattern
    # mode's, the keepers), to room subscribers, and to each gateway's connections in all.
    pattern_sub_bytes: int = -1
    room_sub_bytes: int = -1
    gateway_in_bytes: list[int] = field(default_factory=list)
    node_out_bytes: list[int] = field(default_factory=list)  # each node's delta (INFO included)
    repl_out_bytes: int = 0  # total_net_repl_output_bytes delta (to replicas)
    commands_per_log: dict[str, float] = field(default_factory=dict)  # INFO commandstats
    redis_cpu_s: float = math.nan  # INFO cpu used_cpu_user + used_cpu_sys delta, all nodes
    gateway_cpu_s: list[float] = field(default_factory=list)  # each gateway, the window
    gateway_idle_core: list[float] = field(default_factory=list)  # each, streams open, no logs
    own_logs: list[int] = field(default_factory=list)  # logs sent to each gateway's rooms
    loadgen_core: float = math.nan
    cores: dict[int, float] = field(default_factory=dict)
    note: str = ""  # e.g. the mode asked for did not take effect
    error: str | None = None

    @property
    def key(self) -> str:
        return f"{self.topology}-{self.mode}-{self.gateways}"

    @property
    def bytes_per_log(self) -> float:
        """Redis' bytes out per log to the gateways (the publisher's replies taken out)."""
        return (self.redis_out_bytes - self.publisher_bytes) / self.sent if self.sent else math.nan

    @property
    def redis_us_per_log(self) -> float:
        return self.redis_cpu_s * 1e6 / self.sent if self.sent else math.nan

    def busy_s(self, g: int) -> float:
        """Gateway g's CPU in the window above its idle rate (streams open, no logs)."""
        idle = self.gateway_idle_core[g] if g < len(self.gateway_idle_core) else 0.0
        return self.gateway_cpu_s[g] - idle * self.wall_s

    @property
    def gateways_us_per_log(self) -> float:
        """All gateways' CPU per log, idle taken out."""
        if not self.sent or not self.gateway_cpu_s:
            return math.nan
        return sum(self.busy_s(g) for g in range(self.gateways)) * 1e6 / self.sent

    def own_us(self) -> list[float]:
        """Each gateway's CPU per log of its own rooms (idle taken out)."""
        return [
            self.busy_s(g) * 1e6 / self.own_logs[g] if self.own_logs[g] else math.nan
            for g in range(min(self.gateways, len(self.own_logs), len(self.gateway_cpu_s)))
        ]


def single_of(config: Config, configs: Sequence[Config]) -> Config | None:
    """The one-gateway run of `config`'s topology and mode."""
    for c in configs:
        if (c.topology, c.mode, c.gateways) == (config.topology, config.mode, 1):
            return c
    return None


def own_room_us(config: Config, configs: Sequence[Config]) -> tuple[float, str]:
    """What a gateway spends per log of its own rooms, at `config`'s number of gateways: over
    the gateways of the rooms-mode run with as many gateways that hold no pattern (they
    receive their rooms' logs and nothing else); else the one-gateway run of the same mode
    (every log its own). Returns the µs and which of the two it is."""
    for c in configs:
        if (c.topology, c.mode, c.gateways) != (config.topology, "rooms", config.gateways):
            continue
        pure = [
            g
            for g in range(c.gateways)
            if g < len(c.gateway_subs) and c.gateway_subs[g][0] == 0 and c.gateway_subs[g][1]
        ]
        own = sum(c.own_logs[g] for g in pure)
        if own and not c.error:
            return sum(c.busy_s(g) for g in pure) * 1e6 / own, "rooms gateways without a pattern"
    single = single_of(config, configs)
    if single is None or not single.sent:
        return math.nan, "none"
    return single.gateways_us_per_log, "one gateway"


def foreign_us(config: Config, configs: Sequence[Config]) -> float:
    """What the gateways spend per log of a room they do not serve, estimated: their CPU
    beyond their idle rate, minus their own rooms' logs at `own_room_us`, over the logs of the
    other gateways' rooms (a rooms-mode gateway receives none, unless it holds a pattern)."""
    if config.gateways < 2 or not config.sent:
        return math.nan
    own_us, _ = own_room_us(config, configs)
    spent = sum(
        config.busy_s(g) - own_us / 1e6 * config.own_logs[g] for g in range(config.gateways)
    )
    foreign = sum(config.sent - config.own_logs[g] for g in range(config.gateways))
    return spent * 1e6 / foreign if foreign else math.nan


def _ratio(value: float, ref: float | None) -> str:
    if ref is None or not ref or math.isnan(ref) or math.isnan(value):
        return "n/a"
    return f"{value / ref:.2f}x"


def _span(values: Sequence[float], spec: str) -> str:
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return "n/a"
    lo, hi = min(vals), max(vals)
    return fmt(lo, spec) if format(lo, spec) == format(hi, spec) else f"{lo:{spec}}-{hi:{spec}}"


def _subscriptions(c: Config) -> str:
    parts = [f"{c.patterns} psub", f"{c.channels} sub"]
    if c.shard_channels >= 0:
        parts.append(f"{c.shard_channels} ssub")
    return ", ".join(parts)


HEAD: Final = (
    "mode", "gateways", "rooms / gateway", "logs sent (logs/s)", "every stream every log",
    "Redis subscriptions", "Redis B out / log", "vs 1 gateway",
    "of it to pattern / room subs (tcp_info)", "Redis µs / log",
    "vs 1 gateway", "gateways µs / log (all)", "µs / own-room log, each gateway",
    "µs / other-room log (est.)",
)  # fmt: skip


def _per_log(count: int, c: Config) -> str:
    return fmt(count / c.sent if c.sent and count >= 0 else math.nan, ",.0f")


def _split(c: Config) -> str:
    if c.pattern_sub_bytes < 0:
        return "n/a"
    return f"{_per_log(c.pattern_sub_bytes, c)} / {_per_log(c.room_sub_bytes, c)}"


def _foreign(c: Config, configs: Sequence[Config]) -> str:
    value = fmt(foreign_us(c, configs), ".1f")
    if c.gateways > 1 and own_room_us(c, configs)[1] == "one gateway":
        return value + " (†)"  # against the 1-gateway cost: fewer logs per gateway in it too
    return value


def row(c: Config, configs: Sequence[Config]) -> list[str]:
    single = single_of(c, configs)
    if c.error:
        return [c.mode, str(c.gateways), f"error: {c.error}", *["n/a"] * (len(HEAD) - 3)]
    complete = "yes" if c.complete else f"no ({c.behind} streams behind, {c.extra} extra logs)"
    return [
        c.mode + (" (*)" if c.note else ""),
        str(c.gateways),
        _span([float(n) for n in c.rooms_per_gateway], ".0f"),
        f"{c.sent:,} ({fmt(c.publish_rate, ',.0f')})",
        complete,
        _subscriptions(c),
        fmt(c.bytes_per_log, ",.0f"),
        _ratio(c.bytes_per_log, single.bytes_per_log if single else None),
        _split(c),
        fmt(c.redis_us_per_log, ".1f"),
        _ratio(c.redis_us_per_log, single.redis_us_per_log if single else None),
        fmt(c.gateways_us_per_log, ".1f"),
        _span(c.own_us(), ".1f"),
        _foreign(c, configs),
    ]


def one_delivery(configs: Sequence[Config]) -> float:
    """Bytes out of one delivery: one gateway's pattern subscription, one log."""
    for c in configs:
        if (c.topology, c.mode, c.gateways) == ("redis", "pattern", 1) and c.sent:
            return c.bytes_per_log
    return math.nan


def saturation(configs: Sequence[Config]) -> list[str]:
    """When one Redis saturates, from this run's bytes and CPU per log and the sourced
    deliveries/s ceiling."""
    out: list[str] = []
    unit = one_delivery(configs)
    for c in configs:
        if c.topology != "redis" or c.error or not c.sent:
            continue
        per_log = c.bytes_per_log / unit if unit else math.nan
        logs = DELIVERIES_CEILING / per_log if per_log else math.nan
        core = 1e6 / c.redis_us_per_log if c.redis_us_per_log else math.nan
        out.append(
            f"- {c.mode}, {c.gateways} gateway(s): {fmt(per_log, '.2f')} deliveries per log "
            f"(bytes out / one pattern delivery's) → {DELIVERIES_CEILING:,} deliveries/s is "
            f"{fmt(logs, ',.0f')} logs/s; Redis CPU {fmt(c.redis_us_per_log, '.1f')} µs/log "
            f"here → one core at {fmt(core, ',.0f')} logs/s"
        )
    return out


EACH_HEAD: Final = (
    "topology", "mode", "gateway", "rooms", "logs of its rooms", "psub / sub / ssub",
    "B received / log (tcp_info)", "CPU s (idle out)", "µs / own-room log",
)  # fmt: skip


def each_gateway(configs: Sequence[Config]) -> list[list[str]]:
    """Per gateway, for the most gateways of each topology and mode."""
    rows: list[list[str]] = []
    most: dict[tuple[str, str], Config] = {}
    for c in configs:
        if not c.error and c.gateways > 1 and c.sent:
            key = (c.topology, c.mode)
            if key not in most or c.gateways > most[key].gateways:
                most[key] = c
    for c in most.values():
        own = c.own_us()
        for g in range(c.gateways):
            subs = c.gateway_subs[g] if g < len(c.gateway_subs) else [0, 0, 0]
            rows.append(
                [
                    c.topology, c.mode, f"{g + 1} of {c.gateways}", str(c.rooms_per_gateway[g]),
                    f"{c.own_logs[g]:,}", " / ".join(str(n) for n in subs),
                    _per_log(c.gateway_in_bytes[g] if g < len(c.gateway_in_bytes) else -1, c),
                    fmt(c.busy_s(g), ".2f"), fmt(own[g] if g < len(own) else math.nan, ".1f"),
                ]
            )  # fmt: skip
    return rows


def markdown(configs: Sequence[Config], pinning: str) -> str:
    out: list[str] = []
    for topology, title in (("redis", "One Redis"), ("cluster", "Redis Cluster, 3 shards")):
        chosen = [c for c in configs if c.topology == topology]
        if not chosen:
            continue
        first = chosen[0]
        out += [
            f"### {title}: {first.rooms:,} rooms x {first.per_room} streams, "
            f"{fmt(first.rate, ',.0f')} logs/s round-robin, each room's streams on its gateway",
            "",
            *table(HEAD, [row(c, configs) for c in chosen]),
            "",
        ]
    checks = [
        f"{c.key} {_per_log(sum(c.gateway_in_bytes), c)} vs {fmt(c.bytes_per_log, ',.0f')}"
        for c in configs
        if c.gateway_in_bytes and c.sent
    ]
    if checks:
        out += [
            "Cross-check, B / log Redis sent on the gateways' connections (tcp_info) against "
            "the INFO figure: " + "; ".join(checks) + ".",
            "",
        ]
    if each := each_gateway(configs):
        out += ["#### Each gateway, at the most gateways", "", *table(EACH_HEAD, each), ""]
    notes = sorted({f"(*) {c.mode}: {c.note}" for c in configs if c.note})
    out += notes + ([""] if notes else [])
    pub = [c.publisher_bytes / c.sent for c in configs if c.sent]
    repl = [c.repl_out_bytes / c.sent for c in configs if c.sent and c.topology == "cluster"]
    out += [
        f"Pinning: {pinning}. Redis B out / log: INFO `total_net_output_bytes` over the window, "
        "minus the meter's own INFO reply and the publisher's replies (counted from the replies "
        f"it parsed: {_span(pub, '.0f')} B/log) and the replication stream "
        "(`total_net_repl_output_bytes`, which Redis 7.0 counts in both"
        + (f"; {_span(repl, ',.0f')} B/log to the Cluster's replicas" if repl else "")
        + "), summed over every node of a Cluster. CPU: INFO cpu "
        "for Redis, /proc utime+stime for each gateway minus its idle rate (streams open, no "
        "logs). µs / other-room log: the gateways' CPU minus their own rooms' logs at the cost "
        "per own-room log of the rooms-mode gateways without a pattern subscription at the same "
        "number of gateways (they receive nothing else; else the one-gateway cost), over the "
        "other gateways' logs. (†): no rooms-mode gateway without a pattern at that number of "
        "gateways, so against the one-gateway cost per log, which batches more: the figure then "
        "also holds what fewer logs per gateway cost in wake-ups.",
        "",
        "When one Redis saturates:",
        "",
        *saturation(configs),
    ]
    return "\n".join(out)


def line(c: Config) -> str:
    """The progress line of a configuration."""
    if c.error:
        return f"  {c.key}: error: {c.error}"
    return (
        f"  {c.key}: {c.sent} logs at {c.publish_rate:.0f}/s, complete={c.complete}, "
        f"{c.bytes_per_log:.0f} B/log out, redis {c.redis_us_per_log:.1f} µs/log, gateways "
        f"{c.gateways_us_per_log:.1f} µs/log, subscriptions {_subscriptions(c)}"
        + (f" [{c.note}]" if c.note else "")
    )


def configs_of(doc: dict[str, Any]) -> list[Config]:
    return [config_of(raw) for raw in doc.get("configs", [])]


def config_of(raw: dict[str, Any]) -> Config:
    """A record back from a result JSON."""
    fields = {k: v for k, v in raw.items() if k in Config.__dataclass_fields__}
    for k in ("rate", "publish_rate", "wall_s", "redis_cpu_s", "loadgen_core"):
        fields[k] = math.nan if fields.get(k) is None else float(fields[k])
    fields["cores"] = {int(k): v for k, v in (fields.get("cores") or {}).items()}
    return Config(**fields)
