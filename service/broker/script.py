"""The publish script and the envelope it puts on the channel: one home for the service's
brokers, the Python `Publisher` and the bench.

`XADD` + `PUBLISH` (the payload carries the stream id) + `EXPIRE` in one step: every log that
is live is also replayable, and channel order is id order.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from ..ids import StreamKey, parse_id
from .keys import PLAIN, KeySpace

# KEYS[1] history stream, KEYS[2] live channel; ARGV[1] MAXLEN, ARGV[2] TTL, ARGV[3..] logs.
# With KEYS[3], an idempotency key: ARGV[3] is its TTL, ARGV[4] the request's fingerprint,
# ARGV[5] a nonce of this call, and the logs start at ARGV[6]. A key seen before stores nothing
# and returns its ids, led by "replayed" unless the nonce is this call's (redis-py resending
# the same call after a lost reply: the logs were stored by this very publish); a fingerprint
# that differs is the error IDEMPOTENCY_KEY_REUSED. Otherwise the key keeps
# "<fingerprint> <nonce> <id>,<id>..." for its TTL.
PUBLISH_SCRIPT: Final = """
local first = 3
if KEYS[3] then
  first = 6
  local prior = redis.call('GET', KEYS[3])
  if prior then
    local seen, nonce, stored = string.match(prior, '^(%S+) (%S+) (%S+)$')
    if seen ~= ARGV[4] then
      return redis.error_reply('IDEMPOTENCY_KEY_REUSED')
    end
    local ids = {}
    if nonce ~= ARGV[5] then ids[1] = 'replayed' end
    for id in string.gmatch(stored, '[^,]+') do ids[#ids + 1] = id end
    return ids
  end
end
local ids = {}
for i = first, #ARGV do
  local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'log', ARGV[i])
  redis.call('PUBLISH', KEYS[2], '{"id":"' .. id .. '",' .. string.sub(ARGV[i], 2))
  ids[#ids + 1] = id
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
if KEYS[3] then
  local value = ARGV[4] .. ' ' .. ARGV[5] .. ' ' .. table.concat(ids, ',')
  redis.call('SET', KEYS[3], value, 'EX', ARGV[3])
end
return ids
"""
_REUSED: Final = "IDEMPOTENCY_KEY_REUSED"

# The script prefixes the log with its stream id: {"id":"<id>",...}.
_ENVELOPE: Final = b'{"id":"'
_MAX_ID_LEN: Final = 41


@dataclass(frozen=True, slots=True)
class Published:
    ids: list[str]
    replayed: bool  # the key had been used for these logs: nothing new was stored


class KeyReused(Exception):
    """An idempotency key sent again with other logs than the first time."""


def envelope(stream_id: str, data: bytes) -> bytes:
    """What the script sends: the log with its stream id put first (`data` is an object)."""
    if data == b"{}":
        return _ENVELOPE + stream_id.encode("ascii") + b'"}'
    return _ENVELOPE + stream_id.encode("ascii") + b'",' + data[1:]


def split_envelope(payload: bytes) -> tuple[str | None, StreamKey | None, bytes]:
    """Strip the `"id"` the script put first: (id, its key, the log). Foreign payloads come
    back unchanged, without id; the id is parsed here once per message."""
    if not payload.startswith(_ENVELOPE):
        return None, None, payload
    end = payload.find(b'",', len(_ENVELOPE), len(_ENVELOPE) + _MAX_ID_LEN + 2)
    if end < 0:
        return None, None, payload
    stream_id = payload[len(_ENVELOPE) : end].decode("ascii", "replace")
    key = parse_id(stream_id)
    if key is None:
        return None, None, payload
    return stream_id, key, b"{" + payload[end + 2 :]


async def store_and_publish(
    script: AsyncScript,
    room: str,
    logs: Sequence[bytes],
    history_max: int,
    history_ttl: int,
    *,
    keys: KeySpace = PLAIN,
    key: str | None = None,
    key_ttl: int = 600,
    seen: str = "",
    nonce: str | None = None,
) -> Published:
    """Run the publish script for one room; the ids of the stored logs, in order.

    With `key`, at most once: see `Broker.publish_once`. The nonce (one per call, so the same
    in redis-py's own resends of it) tells a resend of this call from another request.
    """
    names = [keys.history(room), keys.channel(room)]
    args: list[Any] = [history_max, history_ttl]
    if key is not None:
        names.append(keys.publish(room, key))
        args += [key_ttl, seen, nonce or uuid.uuid4().hex]
    try:
        reply = await script(keys=names, args=[*args, *logs])
    except ResponseError as exc:
        if _REUSED in str(exc):
            raise KeyReused(key) from None
        raise
    replayed = bool(reply) and reply[0] == b"replayed"
    ids = [i.decode("ascii") for i in (reply[1:] if replayed else reply)]
    return Published(ids, replayed)
