"""The publish scripts: one home for the service's brokers, the Python `Publisher` and the
bench.

`XADD` + `PUBLISH` (the envelope of envelope.py: the stream id and its tag) + `EXPIRE` in one
step: every log that is live is also replayable, and channel order is id order. The service's
own publishes run `PUBLISH_SCRIPT`; a plain `PUBLISH` that a gateway received is stored by
`PLAIN_SCRIPT`, once however many gateways run it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from redis.exceptions import ResponseError

from .keys import PLAIN, KeySpace

# Shared by both scripts: store one log, publish its envelope (see envelope.py), return its id.
_PUBLISH_LOG: Final = """
local function publish_log(history, channel, maxlen, secret, log)
  local id = redis.call('XADD', history, 'MAXLEN', '~', maxlen, '*', 'log', log)
  local tag = string.sub(redis.sha1hex(secret .. id .. log), 1, 20)
  local rest = '}'
  if log ~= '{}' then rest = ',' .. string.sub(log, 2) end
  redis.call('PUBLISH', channel, '{"id":"' .. id .. '","rlmac":"' .. tag .. '"' .. rest)
  return id
end
"""

# KEYS[1] history stream, KEYS[2] live channel; ARGV[1] MAXLEN, ARGV[2] TTL, ARGV[3] the
# envelope secret, ARGV[4..] logs. With KEYS[3], an idempotency key: ARGV[4] is its TTL,
# ARGV[5] the request's fingerprint, ARGV[6] a nonce of this call, and the logs start at
# ARGV[7]. A key seen before stores nothing and returns its ids, led by "replayed" unless the
# nonce is this call's (redis-py resending the same call after a lost reply: the logs were
# stored by this very publish); a fingerprint that differs is the error IDEMPOTENCY_KEY_REUSED.
# Otherwise the key keeps "<fingerprint> <nonce> <id>,<id>..." for its TTL.
# `publish_call` takes KEYS and ARGV as arguments, so that the batch script below runs the very
# same code for each call it carries.
_PUBLISH_CALL: Final = """
local function publish_call(KEYS, ARGV)
  local first = 4
  if KEYS[3] then
    first = 7
    local prior = redis.call('GET', KEYS[3])
    if prior then
      local seen, nonce, stored = string.match(prior, '^(%S+) (%S+) (%S+)$')
      if seen ~= ARGV[5] then
        return redis.error_reply('IDEMPOTENCY_KEY_REUSED')
      end
      local ids = {}
      if nonce ~= ARGV[6] then ids[1] = 'replayed' end
      for id in string.gmatch(stored, '[^,]+') do ids[#ids + 1] = id end
      return ids
    end
  end
  local ids = {}
  for i = first, #ARGV do
    ids[#ids + 1] = publish_log(KEYS[1], KEYS[2], ARGV[1], ARGV[3], ARGV[i])
  end
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  if KEYS[3] then
    local value = ARGV[5] .. ' ' .. ARGV[6] .. ' ' .. table.concat(ids, ',')
    redis.call('SET', KEYS[3], value, 'EX', ARGV[4])
  end
  return ids
end
"""
PUBLISH_SCRIPT: Final = _PUBLISH_LOG + _PUBLISH_CALL + "return publish_call(KEYS, ARGV)\n"


def batch_script(functions: str, call: str, *, shebang: str = "") -> str:
    """A script that runs several calls of the script `return <call>(KEYS, ARGV)` in one
    (broker/coalesce.py), with the very same Lua function `call` (defined in `functions`).

    KEYS holds each call's keys in turn; ARGV[1] is the number of calls, then for each: its
    number of keys, its number of arguments, its arguments. Returns one reply per call, in
    order: its own, or its own error (one it returns, such as IDEMPOTENCY_KEY_REUSED, or a
    command Redis refused, caught so that the calls after it still run; the message keeps
    saying it came from inside a script, "on @user_script", as the broker tells a refusal
    part-way through a script from one before it started).
    """
    head = f"{shebang}\n" if shebang else ""
    return (
        head
        + functions
        + f"""
local out = {{}}
local k, a = 1, 2
for c = 1, tonumber(ARGV[1]) do
  local nk, na = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local keys, args = {{}}, {{}}
  for i = 1, nk do keys[i] = KEYS[k + i - 1] end
  for i = 1, na do args[i] = ARGV[a + 1 + i] end
  k, a = k + nk, a + 2 + na
  local ok, reply = pcall({call}, keys, args)
  if not ok then
    local message = type(reply) == 'table' and reply.err or tostring(reply)
    reply = redis.error_reply(message .. ' (call ' .. c .. ' of a batch, on @user_script)')
  end
  out[c] = reply
end
return out
"""
    )


BATCH_PUBLISH_SCRIPT: Final = batch_script(_PUBLISH_LOG + _PUBLISH_CALL, "publish_call")

# A plain PUBLISH, stored once however many gateways received it (broker/plain.py says how).
# KEYS[1] history stream, KEYS[2] live channel, KEYS[3] the claim of this payload; ARGV[1]
# MAXLEN, ARGV[2] TTL, ARGV[3] the envelope secret, ARGV[4] which occurrence of this payload
# the caller saw (1, 2, ...), ARGV[5] the claim's TTL, ARGV[6] the log. Returns the new id, or
# false when some gateway stored that occurrence already.
PLAIN_SCRIPT: Final = (
    _PUBLISH_LOG
    + """
local stored = tonumber(redis.call('GET', KEYS[3]) or '0')
if stored >= tonumber(ARGV[4]) then
  redis.call('EXPIRE', KEYS[3], ARGV[5])
  return false
end
redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[5])
local id = publish_log(KEYS[1], KEYS[2], ARGV[1], ARGV[3], ARGV[6])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return id
"""
)
_REUSED: Final = "IDEMPOTENCY_KEY_REUSED"


def sharded(script: str) -> str:
    """A script's Redis Cluster variant: its one `PUBLISH` becomes `SPUBLISH`, to the shard
    channel in KEYS[2] (`TAGGED`), in the slot of the room's other keys. A classic PUBLISH
    would be broadcast over the cluster bus to every node (RESEARCH-SCALEOUT.md §2.1)."""
    head = "'PUBLISH'"
    if script.count(head) != 1:
        raise ValueError("a publish script has exactly one PUBLISH")
    return script.replace(head, "'SPUBLISH'")


# Which commands the scripts run would the calling user be refused, checked without running
# them (Redis 7's `redis.acl_check_cmd`): a refusal inside a script does not say which command
# it was. ARGV: the room's history, channel, idempotency-key and claim key names (ARGV, not
# KEYS, so a key the user may not touch is reported rather than refusing this script).
PERMISSIONS_SCRIPT: Final = """
local checks = {
  {'XADD', ARGV[1], 'MAXLEN', '~', '1', '*', 'log', '{}'},
  {'EXPIRE', ARGV[1], '1'},
  {'PUBLISH', ARGV[2], '{}'},
  {'GET', ARGV[3]},
  {'SET', ARGV[3], '-', 'EX', '1'},
  {'GET', ARGV[4]},
  {'SET', ARGV[4], '1', 'EX', '1'},
}
local missing = {}
for _, check in ipairs(checks) do
  if not redis.acl_check_cmd(unpack(check)) then
    missing[#missing + 1] = check[1] .. ' ' .. check[2]
  end
end
return missing
"""
# The Cluster's variants (broker/cluster.py): SPUBLISH on the room's shard channel.
SHARDED_PUBLISH_SCRIPT: Final = sharded(PUBLISH_SCRIPT)
SHARDED_PLAIN_SCRIPT: Final = sharded(PLAIN_SCRIPT)
SHARDED_PERMISSIONS_SCRIPT: Final = sharded(PERMISSIONS_SCRIPT)


@dataclass(frozen=True, slots=True)
class Published:
    ids: list[str]
    replayed: bool  # the key had been used for these logs: nothing new was stored


class ScriptRunner(Protocol):
    """What runs the publish script: redis-py's `AsyncScript`, or the broker's batcher of
    several calls in one pipeline (coalesce.py)."""

    def __call__(self, keys: Sequence[Any], args: Sequence[Any]) -> Awaitable[Any]: ...


class KeyReused(Exception):
    """An idempotency key sent again with other logs than the first time."""


async def store_and_publish(
    script: ScriptRunner,
    room: str,
    logs: Sequence[bytes],
    history_max: int,
    history_ttl: int,
    *,
    secret: bytes,
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
    args: list[Any] = [history_max, history_ttl, secret]
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
