"""What Redis refused, in words an operator can act on: an ACL refusal inside a script names
no command, so the commands of the scripts that this user may not run are looked up (Redis 7's
`redis.acl_check_cmd`, by `PERMISSIONS_SCRIPT`) only after such a refusal, never on the
publish path."""

from __future__ import annotations

from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from ._errors import explain
from .keys import KeySpace


async def describe_refusal(
    exc: RedisError,
    room: str | None,
    keys: KeySpace,
    permissions: AsyncScript,
    *,
    client_cert: bool,
) -> tuple[str, bool]:
    """The reason to report, and whether the refused command was the scripts' first write,
    XADD (then nothing was stored)."""
    why = f"redis refused: {explain(exc, client_cert=client_cert)}"
    if room is None or "can't run this command" not in str(exc):
        return why, False
    names = [keys.history(room), keys.channel(room), keys.publish(room, "k"), keys.plain(room, "0")]
    try:
        missing = await permissions(args=names)
    except RedisError:  # no acl_check_cmd (before Redis 7), or not even this is allowed
        return why, False
    if not missing:
        return why, False
    refused = [m.decode() if isinstance(m, bytes) else str(m) for m in missing]
    first_write = any(n.upper().startswith("XADD") for n in refused)
    return (
        f"redis refused: this Redis user may not run {', '.join(refused)} "
        "(docs/redis.md has the gateway's ACL)"
    ), first_write
