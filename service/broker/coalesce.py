"""The publish script calls of one event-loop turn, sent to Redis in one pipeline.

redis-py's cost per command is mostly its own Python around the round trip (a pooled
connection taken and health-checked, a timeout armed, the reply read): ~4x what the same
command costs inside a pipeline. Concurrent POSTs are many small publishes, so every call made
during one loop turn is queued, and the turn after sends them together, on one connection, as
one `EVALSHA` each: Redis runs them in that order (one room's order is the order of its calls),
and each call is answered on its own, as soon as its reply is read: its ids, or its own error
reply (IDEMPOTENCY_KEY_REUSED, a refusal). A failure of the pipeline itself (a lost connection,
a timeout, no connection to be had) is raised to every call not answered yet, and the broker's
`_call` decides for each, as for a lone command, whether it surely did not run.

The replies are read with redis-py's connection API (`pack_commands`, `send_packed_command`,
`read_response`, as its `Pipeline` does) rather than a `Pipeline`, which reads every reply
before answering any and adds its own Python per command (~15 % more CPU per call, measured).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Sequence
from typing import Any, Final

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError

from .script import ScriptRunner

MAX_BATCH: Final = 256  # calls per pipeline; the rest go in the next one, after it


def script_runner(client: aioredis.Redis, script: str, *, batched: bool) -> ScriptRunner:
    """`script` registered with `client`, its calls batched per loop turn or each its own."""
    registered = client.register_script(script)
    return ScriptBatcher(client, registered) if batched else registered


# A call's outcome: Redis' reply, or what it failed with and whether its whole pipeline did.
_Outcome = tuple[Any, Exception | None, bool]


class _Call:
    __slots__ = ("args", "future")

    def __init__(self, args: list[Any], future: asyncio.Future[_Outcome]) -> None:
        self.args = args  # EVALSHA's: numkeys, keys, args (the sha is prepended when sent)
        self.future = future


class ScriptBatcher:
    """Called like redis-py's `AsyncScript` (`await batcher(keys=..., args=...)`)."""

    def __init__(self, client: aioredis.Redis, script: AsyncScript) -> None:
        self._client = client
        self._script = script  # its sha, and its text to load after a NOSCRIPT
        self._queued: list[_Call] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def __call__(self, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        loop = asyncio.get_running_loop()
        call = _Call([len(keys), *keys, *args], loop.create_future())
        self._queued.append(call)
        if len(self._queued) == 1:
            # A task's first step runs after the callbacks already due this turn: the other
            # requests being handled now queue their calls before it sends.
            task = loop.create_task(self._send(), name="roomlogs-publish-batch")
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        reply, failed, shared = await call.future
        if failed is not None:
            # Raised here, not set on the future: a pipeline's one exception is shared by its
            # calls, so each raises a copy and their tracebacks (and the frames those hold)
            # stay apart.
            raise _own(failed) if shared else failed
        return reply

    async def _send(self) -> None:
        batch, self._queued = self._queued, []
        while batch:
            now, batch = batch[:MAX_BATCH], batch[MAX_BATCH:]
            await self._run(now)

    async def _run(self, calls: list[_Call]) -> None:
        try:
            missing = await self._pipeline(calls)
            if missing:
                # Redis lost its scripts (a restart, SCRIPT FLUSH): NOSCRIPT ran nothing, so
                # those calls are sent again once the script is loaded, as AsyncScript does.
                self._script.sha = await self._client.script_load(self._script.script)
                for call, reply in await self._pipeline(missing, last=True):
                    _answer(call, reply)
        except Exception as exc:
            for call in calls:
                if not call.future.done():
                    call.future.set_result((None, exc, True))
        except BaseException:  # cancelled (the loop is closing): so are the calls
            for call in calls:
                call.future.cancel()
            raise

    async def _pipeline(self, calls: list[_Call], *, last: bool = False) -> list[Any]:
        """Send `calls` at once on one pooled connection and answer each as its reply is read
        (the first need not wait for Redis to run the last); returns the NOSCRIPT ones, or with
        `last`, (call, reply) for them. redis-py's `Pipeline` would read every reply first."""
        pool = self._client.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            sha = self._script.sha
            await conn.send_packed_command(
                conn.pack_commands([("EVALSHA", sha, *call.args) for call in calls])
            )
            missing: list[Any] = []
            for call in calls:
                try:
                    reply = await conn.read_response()
                except ResponseError as exc:  # an error reply: this call's own
                    reply = exc
                if isinstance(reply, NoScriptError):
                    missing.append((call, reply) if last else call)
                else:
                    _answer(call, reply)
            return missing
        except BaseException:
            # Replies left unread would answer the connection's next user: it goes.
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)


def _answer(call: _Call, reply: Any) -> None:
    if call.future.done():
        return  # its request was cancelled (the client left): the log is stored all the same
    if isinstance(reply, Exception):
        call.future.set_result((None, reply, False))
    else:
        call.future.set_result((reply, None, False))


def _own(exc: Exception) -> Exception:
    try:
        return copy.copy(exc)
    except Exception:  # an exception that cannot be rebuilt from its args: raised as it is
        return exc
