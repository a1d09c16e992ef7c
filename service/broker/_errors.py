"""What redis-py's exceptions say about a failed command: quarantined here, since it reads
their messages (checked against redis-py 7.4 to 8.1)."""

from __future__ import annotations

from typing import Final

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

CONNECTION_ERRORS: Final = (RedisConnectionError, RedisTimeoutError, OSError)


def never_sent(exc: BaseException) -> bool:
    """Whether a failed command surely never reached Redis: no connection was had. redis-py
    says so only in its messages: the pool's wait ran out ("No connection available"), or
    connecting failed ("Error … connecting to …", "Timeout connecting")."""
    if not isinstance(exc, RedisError):
        return False
    text = str(exc)
    return "No connection available" in text or "connecting to" in text.lower()
