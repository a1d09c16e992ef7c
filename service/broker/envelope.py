"""The envelope the publish scripts put on a room's channel, and the keyed tag that makes it
the service's own: `{"id":"<stream id>","rlmac":"<tag>",<the stored log's members>}`.

Anyone who may `PUBLISH` could otherwise pass off a payload of that shape and so choose the
stream id that every gateway orders the room by (one id 30 minutes ahead hid every real log for
30 minutes). The tag is the first 20 hex digits of SHA-1 over a secret, the id and the log:
a plain publisher that cannot read the secret cannot make one, and a tag seen on the channel is
good for its own id and log only. (Truncated, so no length extension; Lua in Redis has SHA-1
but no HMAC.)

The secret lives in Redis (`ENVELOPE_SECRET_KEY`, made by the first gateway that finds none),
so every gateway, worker and publishing tool shares it with no configuration. Gateways read it
again whenever their subscription is (re)made, and keep accepting the one before it: a Redis
restart without persistence loses the key, and the first gateway back makes a new one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

import redis.asyncio as aioredis

from ..ids import StreamKey, parse_id

ENVELOPE_SECRET_KEY: Final = "roomlogs:envelope-secret"  # noqa: S105 (the key's name)
MAC_CHARS: Final = 20

HEAD: Final = b'{"id":"'
_TAG: Final = b'","rlmac":"'
_MAX_ID_LEN: Final = 41
# A stream id is at most 41 characters: the tag's member starts within this many bytes.
_TAG_BY: Final = len(HEAD) + _MAX_ID_LEN + len(_TAG)


def is_envelope(payload: bytes) -> bool:
    """Shaped like the scripts' envelope (its tag not checked): cheap, for every message."""
    return payload.startswith(HEAD) and payload.find(_TAG, len(HEAD), _TAG_BY) > 0


def split_envelope(payload: bytes) -> tuple[str, StreamKey, bytes, bytes] | None:
    """(id, its key, tag, the log) of an envelope; None when `payload` is not shaped like one."""
    if not payload.startswith(HEAD):
        return None
    end = payload.find(_TAG, len(HEAD), _TAG_BY)
    if end < 0:
        return None
    stream_id = payload[len(HEAD) : end].decode("ascii", "replace")
    key = parse_id(stream_id)
    start = end + len(_TAG)
    close = start + MAC_CHARS
    if key is None or payload[close : close + 1] != b'"':
        return None
    after = payload[close + 1 : close + 2]
    if after == b"}":
        body = b"{}"
    elif after == b",":
        body = b"{" + payload[close + 2 :]
    else:
        return None
    return stream_id, key, payload[start:close], body


class Envelopes:
    """Tags and checks envelopes with the shared secret (and, for a while, the one before)."""

    __slots__ = ("_keys", "secret")

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self._keys: tuple[hashlib._Hash, ...] = (hashlib.sha1(secret),)  # noqa: S324 (what Lua in Redis has)

    def adopt(self, secret: bytes) -> bool:
        """Use `secret` from now on, still accepting the current one; whether it changed."""
        if secret == self.secret:
            return False
        self.secret = secret
        self._keys = (hashlib.sha1(secret), self._keys[0])  # noqa: S324
        return True

    def tag(self, stream_id: str, log: bytes) -> bytes:
        """What the scripts compute: `string.sub(redis.sha1hex(secret .. id .. log), 1, 20)`."""
        h = self._keys[0].copy()
        h.update(stream_id.encode("ascii"))
        h.update(log)
        return h.hexdigest()[:MAC_CHARS].encode("ascii")

    def verify(self, stream_id: str, log: bytes, tag: bytes) -> bool:
        ident = stream_id.encode("ascii")
        for base in self._keys:
            h = base.copy()
            h.update(ident)
            h.update(log)
            if hmac.compare_digest(h.hexdigest()[:MAC_CHARS].encode("ascii"), tag):
                return True
        return False

    def wrap(self, stream_id: str, log: bytes) -> bytes:
        """The envelope the scripts publish for `log` (an object's one-line JSON)."""
        rest = b"}" if log == b"{}" else b"," + log[1:]
        return HEAD + stream_id.encode("ascii") + _TAG + self.tag(stream_id, log) + b'"' + rest


async def read_secret(client: aioredis.Redis) -> bytes:
    """The shared secret, made now if Redis has none (whoever makes it first wins)."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.set(ENVELOPE_SECRET_KEY, secrets.token_hex(16), nx=True)
        pipe.get(ENVELOPE_SECRET_KEY)
        _, secret = await pipe.execute()
    if not isinstance(secret, bytes):
        raise RuntimeError(f"{ENVELOPE_SECRET_KEY} could not be read")
    return secret
