"""The publish script calls of one event-loop turn, sent to Redis in one pipeline.

redis-py's cost per command is mostly its own Python around the round trip (a pooled
connection taken and health-checked, a timeout armed, the reply read): ~4x what the same
command costs inside a pipeline. Concurrent POSTs are many small publishes, so every call made
during one loop turn is queued, and the turn after sends them together, on one connection, as
one `EVALSHA` each: Redis runs them in that order (one room's order is the order of its calls),
and each call is answered on its own: its ids, or its own error reply
(IDEMPOTENCY_KEY_REUSED, a refusal). A failure of the pipeline itself (a lost connection, a
timeout, no connection to be had) is raised to every call of it, and the broker's `_call`
decides for each, as for a lone command, whether it surely did not run.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Sequence
from typing import Any, Final

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

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
            replies = await self._pipeline(calls)
            missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
            if missing:
                # Redis lost its scripts (a restart, SCRIPT FLUSH): NOSCRIPT ran nothing, so
                # those calls are sent again once the script is loaded, as AsyncScript does.
                self._script.sha = await self._client.script_load(self._script.script)
                again = await self._pipeline([calls[i] for i in missing])
                for i, reply in zip(missing, again, strict=True):
                    replies[i] = reply
        except Exception as exc:
            for call in calls:
                if not call.future.done():
                    call.future.set_result((None, exc, True))
            return
        except BaseException:  # cancelled (the loop is closing): so are the calls
            for call in calls:
                call.future.cancel()
            raise
        for call, reply in zip(calls, replies, strict=True):
            if call.future.done():
                continue  # its request was cancelled (the client left): the log is stored
            if isinstance(reply, Exception):
                call.future.set_result((None, reply, False))
            else:
                call.future.set_result((reply, None, False))

    async def _pipeline(self, calls: list[_Call]) -> list[Any]:
        sha = self._script.sha
        async with self._client.pipeline(transaction=False) as pipe:
            for call in calls:
                pipe.evalsha(sha, *call.args)
            # Error replies come back in their places, as exceptions, not raised.
            return await pipe.execute(raise_on_error=False)


def _own(exc: Exception) -> Exception:
    try:
        return copy.copy(exc)
    except Exception:  # an exception that cannot be rebuilt from its args: raised as it is
        return exc
