"""Between the broker and the hub: what arrives is decoded, deduplicated, dispatched, counted;
and the hub's room events become the broker's `subscribe` / `unsubscribe`.

This is centrifuge's shape (`BrokerEventHandler`, `node.addSubscription`): the broker is told
which rooms to listen to and knows nothing of streams, the hub knows nothing of Redis.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Final

from .broker import Broker, BrokerState
from .broker.envelope import is_envelope
from .broker.keys import room_from_channel
from .hub import Hub
from .ids import StreamKey, parse_id
from .message import Message, Rejected, decode, decode_envelope, gap_message
from .metrics import Metrics
from .roomtag import without_room_id

log = logging.getLogger("service.broker")

# Channels whose room is remembered, at most (then forgotten all at once, and relearnt).
_CHANNEL_CACHE: Final = 8192
# How long, and for how many rooms at most, a room's position outlives its last local stream:
# the streams of a reconnect storm come back to a room that knows where it stands.
LINGER_S: Final = 30.0
LINGER_ROOMS: Final = 4096


class Delivery:
    def __init__(self, hub: Hub, metrics: Metrics, max_message_bytes: int) -> None:
        self._hub = hub
        self._metrics = metrics
        self._max_bytes = max_message_bytes
        self._broker: Broker | None = None
        # Rooms with a local stream -> the newest id delivered to them. Drops a message seen
        # twice (live + catch-up), and is where a catch-up resumes.
        self._positions: dict[str, StreamKey | None] = {}
        # Rooms that have delivered nothing yet -> the earliest start of their streams.
        self._floors: dict[str, StreamKey] = {}
        # Valid channel -> its room: parsing and checking the name costs more than the lookup.
        self._channel_rooms: dict[bytes, str] = {}
        self._was_live = False
        # Rooms whose position came off the live subscription since it last went live: see
        # `known_newest`. Only kept where one subscription covers every room (`_steady`).
        self._heard: set[str] = set()
        # Rooms with no local stream left whose position is still followed -> when they closed.
        self._lingering: dict[str, float] = {}
        self._steady = False

    def connect(self, broker: Broker) -> None:
        """From now on the hub's room events subscribe and unsubscribe `broker`."""
        self._broker = broker
        self._hub.listener = self
        self._steady = broker.one_subscription

    # -- the hub's room events ------------------------------------------------------------

    def room_opened(self, room: str) -> None:
        if self._lingering.pop(room, None) is None:
            self._positions[room] = None
        self._forget_lingering(time.monotonic())
        if self._broker is not None:
            self._broker.subscribe((room,))

    def room_closed(self, room: str) -> None:
        self._floors.pop(room, None)
        now = time.monotonic()
        if room in self._heard:
            # Still followed (its messages decoded, its position moving) for a while: the
            # subscription covers it anyway, and a stream that comes back needs no read.
            self._lingering[room] = now
        else:
            self._positions.pop(room, None)
        self._forget_lingering(now)
        if self._broker is not None:
            self._broker.unsubscribe((room,))

    def _forget_lingering(self, now: float) -> None:
        lingering = self._lingering
        while lingering:
            room, since = next(iter(lingering.items()))
            if now - since < LINGER_S and len(lingering) <= LINGER_ROOMS:
                return
            del lingering[room]
            self._positions.pop(room, None)
            self._heard.discard(room)

    def known_newest(self, room: str) -> StreamKey | None:
        """The newest id the live subscription brought `room`, when nothing newer can have
        been delivered here: a stream of `room` registered now gets every later log live, so
        one resuming at or after this id has nothing to read from history.

        None unless one subscription covers every room (`SUBSCRIBE_MODE=pattern`, not a
        Cluster: a per-room subscription can be re-made, caught up, on its own) and the id came
        off it since it last went live: after an outage the catch-up delivers from history,
        and its gaps are told only to streams that did not resume past them. A log newer than
        the live one was published after it, so whatever history lost is older still.
        """
        if room not in self._heard:
            return None
        return self._positions.get(room)

    def started(self, room: str, newest: StreamKey) -> None:
        """A stream of `room` began when `newest` was the newest stored id: up to there it was
        served by its replay (or asked for nothing older). Until the room delivers a live
        log, a catch-up resumes after the earliest such start, not at a guess."""
        if room in self._positions:
            floor = self._floors.get(room)
            if floor is None or newest < floor:
                self._floors[room] = newest

    # -- BrokerEvents ----------------------------------------------------------------------

    def on_messages(self, batch: Sequence[tuple[bytes, bytes]]) -> None:
        self._metrics.broker_messages.inc(len(batch))  # once per batch: a call is ~1 µs
        rooms = self._channel_rooms
        positions = self._positions
        for channel, payload in batch:
            room = rooms.get(channel)
            if room is None:
                room = room_from_channel(channel)
                if room is None:
                    self._reject("bad_channel", channel, payload)
                    continue
                if len(rooms) >= _CHANNEL_CACHE:
                    rooms.clear()
                rooms[channel] = room
            try:
                if is_envelope(payload):
                    # Every instance (and worker) sees every room's logs; only those with a
                    # stream of the room decode it. A bad payload is counted where someone
                    # would receive it.
                    if room in positions:
                        self.deliver(self._open(room, payload))
                        if self._steady:
                            self._heard.add(room)
                else:
                    # A plain PUBLISH: stored (once, by whichever gateway comes first), then
                    # delivered by its envelope like any other log. Any room, watched or not.
                    plain = decode(room, payload, self._max_bytes)
                    # A `roomId` inside is the publisher's, not the room's: it is dropped, and
                    # a multi-room stream names the real room in its place.
                    self._store_plain(room, channel, payload, without_room_id(plain.data))
            except Rejected as exc:
                self._reject(exc.reason, channel, payload)
            except Exception:  # one message must not cost the rest of the batch, or the reader
                log.exception("broker message failed: channel=%r", channel[:140])
                self._reject("error", channel, payload)

    def _open(self, room: str, payload: bytes) -> Message:
        envelopes = self._broker.envelopes if self._broker is not None else None
        if envelopes is None:
            raise Rejected("forged")  # nothing is trusted before the secret is known
        return decode_envelope(room, payload, self._max_bytes, envelopes)

    def _store_plain(self, room: str, channel: bytes, payload: bytes, data: bytes) -> None:
        if self._broker is None:
            raise Rejected("no_broker")
        self._broker.store_plain(room, channel, payload, data)

    def on_gap(self, room: str, after: str, resumed_from: str | None) -> None:
        self._metrics.gaps.inc()
        log.warning(
            "room=%s lost logs to trimming after %s (resumes at %s)", room, after, resumed_from
        )
        self.deliver(gap_message(room, after, resumed_from))

    def on_plain(self, stored: int, claimed: int) -> None:
        if stored:
            self._metrics.plain_logs.labels("stored").inc(stored)
        if claimed:
            self._metrics.plain_logs.labels("claimed").inc(claimed)

    def on_unstored(self, room: str, data: bytes, reason: str) -> None:
        self._metrics.plain_logs.labels(reason).inc()
        if reason == "unknown" or room not in self._positions:
            return  # perhaps stored: the catch-up after the outage delivers it if so
        self.deliver(decode(room, data, self._max_bytes))  # validated once already

    def on_entry(self, room: str, stream_id: str, data: bytes) -> None:
        self._metrics.broker_messages.inc()
        if room not in self._positions:
            return
        key = parse_id(stream_id)
        try:
            self.deliver(decode(room, data, self._max_bytes, stream_id=stream_id, key=key))
        except Rejected as exc:
            self._reject(exc.reason, room.encode(), data)
        except Exception:
            log.exception("stored log failed: room=%s id=%s", room, stream_id)
            self._reject("error", room.encode(), data)

    def position(self, room: str) -> StreamKey | None:
        position = self._positions.get(room)
        return position if position is not None else self._floors.get(room)

    def on_state(self, state: BrokerState, reason: str, *, recovered: bool = False) -> None:
        live = 1 if state is BrokerState.LIVE else 0
        self._metrics.broker_up.set(live)
        self._metrics.worker_ready.set(live)
        if recovered:
            self._metrics.broker_reconnects.inc()
        # Whatever came off the subscription before is no longer the whole story (see
        # `known_newest`); rooms without a stream are no longer followed by a catch-up.
        self._heard.clear()
        for room in self._lingering:
            self._positions.pop(room, None)
        self._lingering.clear()
        if state is BrokerState.DOWN and self._was_live:  # once per loss, not per retry
            kind = "stalled" if reason.startswith("redis stalled") else "lost"
            self._metrics.broker_down.labels(kind).inc()
        self._was_live = state is BrokerState.LIVE

    # -- the hot path ----------------------------------------------------------------------

    def deliver(self, msg: Message) -> int:
        """Hand `msg` to the hub unless its room already had it; how many streams it is for."""
        positions = self._positions
        room = msg.room
        if room not in positions:
            return 0  # no local stream (any more)
        key = msg.key
        if key is not None:
            last = positions[room]
            if last is not None and key <= last:
                return 0
            positions[room] = key
        count = self._hub.dispatch(msg)
        if count and key is not None:
            # Once per message, not per stream: most streams are written right here.
            self._metrics.latency.observe(max(time.time() - key[0] / 1000, 0.0))
        return count

    def _reject(self, reason: str, channel: bytes, payload: bytes) -> None:
        self._metrics.broker_invalid.labels(reason).inc()
        log.warning(
            "skipped broker message: reason=%s channel=%r size=%d head=%r",
            reason,
            channel[:140],
            len(payload),
            payload[:80],
        )
