"""The read of a resuming stream in one call: its room's window and the first page after it.

A resume needs both `XINFO STREAM` (was anything after its id trimmed?) and `XRANGE` (the
logs after it). Sent as a pipeline and a command they were two round trips and a third of a
storm's handshake in redis-py's Python (two pool checkouts, `XINFO`'s first and last entries
parsed into dicts only for their ids); as one script they are one `EVALSHA` answering a flat
list. The script runs only `XINFO STREAM` and `XRANGE`, which the gateway's Redis user may
already run (docs/redis.md), and reads one key: it works in a Cluster on the room's slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from .base import HistoryEntry, Window
from .script import batch_script

# KEYS[1] the history stream; ARGV[1] the exclusive start of the page ("(<id>"), ARGV[2] its
# size. Returns {trimmed (0/1), oldest id or "", newest id or "", id, log, id, log, ...}.
_RESUME_CALL: Final = """
local function resume_call(KEYS, ARGV)
  local ok, info = pcall(redis.call, 'XINFO', 'STREAM', KEYS[1])
  if not ok then return {0, '', ''} end
  local length, added, oldest, newest = 0, 0, '', ''
  for i = 1, #info, 2 do
    local name, value = info[i], info[i + 1]
    if name == 'length' then length = value
    elseif name == 'entries-added' then added = value
    elseif name == 'first-entry' and value then oldest = value[1]
    elseif name == 'last-entry' and value then newest = value[1]
    end
  end
  local out = {0, oldest, newest}
  -- Trimming (MAXLEN ~) is not XDEL: max-deleted-entry-id stays 0-0, so compare counts.
  if added > length then out[1] = 1 end
  for _, row in ipairs(redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])) do
    local fields = row[2]
    for j = 1, #fields, 2 do
      if fields[j] == 'log' then
        out[#out + 1] = row[1]
        out[#out + 1] = fields[j + 1]
        break
      end
    end
  end
  return out
end
"""
_NO_WRITES: Final = "#!lua flags=no-writes"
RESUME_SCRIPT: Final = f"{_NO_WRITES}\n{_RESUME_CALL}return resume_call(KEYS, ARGV)\n"
# A loop turn's resumes in one call (coalesce.py), as the publishes: a storm's resumes arrive
# together, and a lone EVALSHA costs redis-py and the round trip several times its share.
BATCH_RESUME_SCRIPT: Final = batch_script(_RESUME_CALL, "resume_call", shebang=_NO_WRITES)
# Each answers a page of logs: fewer per call than publishes, for Redis' time and the reply's size.
RESUMES_PER_CALL: Final = 32


def parse_resume(reply: Sequence[object]) -> tuple[Window, list[HistoryEntry]]:
    """The script's flat answer as the broker's `window` and `history` would give them."""
    trimmed, oldest, newest = reply[0], reply[1], reply[2]
    window = Window(_text(oldest), _text(newest), trimmed=trimmed == 1)
    entries: list[HistoryEntry] = []
    for i in range(3, len(reply) - 1, 2):
        stream_id, data = reply[i], reply[i + 1]
        if isinstance(stream_id, bytes) and isinstance(data, bytes):
            entries.append((stream_id.decode("ascii"), data))
    return window, entries


def _text(value: object) -> str | None:
    return value.decode("ascii") if isinstance(value, bytes) and value else None
