"""HTTP/1.1 chunked transfer coding (RFC 9112 §7.1) for the bodies of live streams.

After the hand-off no aiohttp writer is left on a stream's socket, so its chunks are framed
here, and only here.
"""

from __future__ import annotations

from typing import Final

# The end of a chunked body: what aiohttp's write_eof would have sent.
LAST: Final = b"0\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)
