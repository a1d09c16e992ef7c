"""What redis-py's exceptions say about a failed command: quarantined here, since it reads
their messages (checked against redis-py 7.4 to 8.1)."""

from __future__ import annotations

import re
from typing import Final

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError


class SubscriptionStalled(RedisTimeoutError):
    """The subscription said nothing and did not answer the liveness probe in time."""


CONNECTION_ERRORS: Final = (RedisConnectionError, RedisTimeoutError, OSError)
# redis-py prefixes a pipeline's error with the whole command, arguments included (the envelope
# secret it was setting, a log): never shown. Its own wrapping of the message goes too.
_PIPELINE_COMMAND: Final = re.compile(r"^Command # \d+ \((\S+)[^)]*\) of pipeline caused error: ")


def never_sent(exc: BaseException) -> bool:
    """Whether a failed command surely never reached Redis: no connection was had. redis-py
    says so only in its messages: the pool's wait ran out ("No connection available"), or
    connecting failed ("Error … connecting to …", "Timeout connecting")."""
    if not isinstance(exc, RedisError):
        return False
    text = str(exc)
    return "No connection available" in text or "connecting to" in text.lower()


def explain(exc: BaseException, *, client_cert: bool) -> str:
    """`exc` as the one line readiness and a 503 show, with what to change when the cause is
    the configuration (the TLS files, the ACL user): redis-py's own words rarely say it."""
    message = str(exc)
    found = _PIPELINE_COMMAND.match(message)
    if found:
        message = f"{found[1]}: " + message[found.end() :].strip("(),'\"")
    text = f"{type(exc).__name__}: {message}"
    hint = _hint(message, client_cert=client_cert)
    return f"{text} ({hint})" if hint else text


def _hint(text: str, *, client_cert: bool) -> str | None:
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return (
            "TLS: Redis' certificate is not signed by a CA the gateway trusts "
            "(REDIS_TLS_CA_FILE), or does not name the URL's host"
        )
    if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
        return "TLS: rediss:// to a port that does not speak TLS?"
    if "no permissions" in text or "can't run this command" in text or "NOPERM" in text:
        return "the Redis user lacks a permission the gateway needs: docs/redis.md has its ACL"
    if "CERTIFICATE_REQUIRED" in text or (not client_cert and "Connection reset by peer" in text):
        return (
            "a Redis with tls-auth-clients resets connections without a client certificate: "
            "REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE"
        )
    return None
