"""The publish script calls of one event-loop turn, sent to Redis as one script call, a few
such batches in flight at a time.

redis-py's cost per command is mostly its own Python around the round trip (a pooled
connection taken and health-checked, a timeout armed, the command packed, the reply read):
several times what Redis spends running it. Concurrent POSTs are many small publishes, so every
call made during one loop turn is queued, and the turn after sends them together as one
`EVALSHA` of `BATCH_PUBLISH_SCRIPT`, which runs `PUBLISH_SCRIPT`'s own code for each call in
turn (one room's order is the order of its calls) and answers each on its own: its ids, or its
own error (IDEMPOTENCY_KEY_REUSED, a refusal), the calls after it run all the same. Calls made
while `in_flight` batches are on the way (8 for publishes, 1 for resumes) wait for one and go
together in the next: at a thousand requests a second, one batch per loop turn held one call
or two, each paying redis-py's and the round trip's cost in full (bench.storm: 3,256 round
trips for 4,931 resumes). Batches on different connections have no order between them, as
concurrent requests have none; a client's publish made after an answer is sent after it. With
a single batch in flight, single-log POSTs ran at the same rate, 100-log POSTs 20 % slower and
the p99 at half the rate was 24 ms against 5 (bench.publish --quick, back to back). A turn with
more calls or logs than one script should run (Redis serves nobody else meanwhile) sends
several, pipelined on one connection. A failure of the round trip itself (a lost connection, a
timeout, no connection to be had) is raised to every call not answered yet, and the broker's
`_call` decides for each, as for a lone command, whether it surely did not run.

Resuming streams' reads go the same way (`BATCH_RESUME_SCRIPT`, at most 32 to a call, each
answering a page of logs): a storm's handshakes arrive together too.

The command is packed by hiredis (a C function; redis-py's asyncio client packs in Python)
and sent and read with redis-py's connection API (`send_packed_command`, `read_response`, as
its `Pipeline` does), which a `Pipeline` would wrap in more Python per command.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Sequence
from typing import Any, Final

import hiredis
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError

from .script import ScriptRunner

MAX_CALLS: Final = 256  # calls per script call
MAX_ARGS: Final = 1024  # their arguments (logs, mostly): a few milliseconds of Redis' time
MAX_PIPELINE: Final = 16  # script calls per round trip; the rest go in the next one, after it
IN_FLIGHT: Final = 8  # batches on the way at once; calls made meanwhile wait for the next


def script_runner(
    client: aioredis.Redis,
    script: str,
    batch: str | None,
    *,
    max_calls: int = MAX_CALLS,
    in_flight: int = IN_FLIGHT,
) -> ScriptRunner:
    """`script` registered with `client`, each call its own; or, with `batch` (the script
    that runs several of its calls: `script.batch_script`), the calls of a loop turn sent
    together, at most `max_calls` in one and `in_flight` such batches on the way at once."""
    if batch is None:
        return client.register_script(script)
    registered = client.register_script(batch)
    return ScriptBatcher(client, registered, max_calls=max_calls, in_flight=in_flight)


# A call's outcome: Redis' reply, or what it failed with and whether its whole pipeline did.
_Outcome = tuple[Any, Exception | None, bool]


class _Call:
    __slots__ = ("args", "future", "keys")

    def __init__(
        self, keys: Sequence[Any], args: Sequence[Any], future: asyncio.Future[_Outcome]
    ) -> None:
        self.keys = keys
        self.args = args
        self.future = future


class ScriptBatcher:
    """Called like redis-py's `AsyncScript` of the single-call script (`await batcher(keys=...,
    args=...)`); runs the batch script."""

    def __init__(
        self,
        client: aioredis.Redis,
        script: AsyncScript,
        *,
        max_calls: int = MAX_CALLS,
        in_flight: int = IN_FLIGHT,
    ) -> None:
        self._client = client
        self._max_calls = max_calls
        self._in_flight = max(1, in_flight)
        self._script = script  # the batch script: its sha, and its text to load after a NOSCRIPT
        self._queued: list[_Call] = []
        self._senders: set[asyncio.Task[None]] = set()  # held: a task nobody holds can go
        self._sending = 0  # senders sending a batch, or about to
        self._scheduled = False  # a sender will take the queue at its first step

    async def __call__(self, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        loop = asyncio.get_running_loop()
        call = _Call(keys, args, loop.create_future())
        self._queued.append(call)
        if not self._scheduled and self._sending < self._in_flight:
            # A task's first step runs after the callbacks already due this turn: the other
            # requests being handled now queue their calls before it sends.
            self._scheduled = True
            self._sending += 1
            task = loop.create_task(self._send(), name="roomlogs-script-batch")
            self._senders.add(task)
            task.add_done_callback(self._senders.discard)
        reply, failed, shared = await call.future
        if failed is not None:
            # Raised here, not set on the future: a pipeline's one exception is shared by its
            # calls, so each raises a copy and their tracebacks (and the frames those hold)
            # stay apart.
            raise _own(failed) if shared else failed
        return reply

    async def _send(self) -> None:
        """What is queued, as one batch; then, while `in_flight` batches are on the way and
        no other sender is due, what was queued meanwhile (the busier the process, the larger
        the batches; a call waits at most one round trip more, none when fewer are in
        flight). A call whose caller gave up before it was sent is not sent."""
        self._scheduled = False
        try:
            while self._queued:
                calls = [call for call in self._queued if not call.future.done()]
                self._queued = []
                chunks = _chunks(calls, self._max_calls)
                while chunks:
                    now, chunks = chunks[:MAX_PIPELINE], chunks[MAX_PIPELINE:]
                    await self._run(now)
                if self._scheduled:
                    break  # the sender due takes what came meanwhile
        except BaseException:  # cancelled (the loop is closing): so are the calls held
            for call in self._queued:
                call.future.cancel()
            self._queued = []
            raise
        finally:
            # No await since the last look at the queue: a call made from now on finds a
            # sender's place free and starts one.
            self._sending -= 1

    async def _run(self, chunks: list[list[_Call]]) -> None:
        try:
            missing = await self._pipeline(chunks)
            if missing:
                # Redis lost its scripts (a restart, SCRIPT FLUSH): NOSCRIPT ran nothing, so
                # those calls are sent again once the script is loaded, as AsyncScript does.
                self._script.sha = await self._client.script_load(self._script.script)
                for chunk, reply in await self._pipeline(missing, last=True):
                    _answer(chunk, reply)
        except Exception as exc:
            for chunk in chunks:
                for call in chunk:
                    if not call.future.done():
                        call.future.set_result((None, exc, True))
        except BaseException:  # cancelled (the loop is closing): so are the calls
            for chunk in chunks:
                for call in chunk:
                    call.future.cancel()
            raise

    async def _pipeline(self, chunks: list[list[_Call]], *, last: bool = False) -> list[Any]:
        """Send a script call per chunk at once on one pooled connection, and answer each
        chunk's calls as its reply is read; returns the NOSCRIPT chunks, or with `last`,
        (chunk, reply) for them."""
        pool = self._client.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            sha = self._script.sha
            await conn.send_packed_command(b"".join(_packed(sha, chunk) for chunk in chunks))
            missing: list[Any] = []
            for chunk in chunks:
                try:
                    reply = await conn.read_response()
                except ResponseError as exc:  # an error reply: the whole script refused
                    reply = exc
                if isinstance(reply, NoScriptError):
                    missing.append((chunk, reply) if last else chunk)
                else:
                    _answer(chunk, reply)
            return missing
        except BaseException:
            # Replies left unread would answer the connection's next user: it goes.
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)


def _chunks(calls: list[_Call], max_calls: int) -> list[list[_Call]]:
    """`calls` in order, cut into script calls of at most `max_calls` calls and about
    MAX_ARGS arguments (a call bigger than that alone in its own)."""
    chunks: list[list[_Call]] = []
    chunk: list[_Call] = []
    args = 0
    for call in calls:
        size = len(call.args)
        if chunk and (len(chunk) == max_calls or args + size > MAX_ARGS):
            chunks.append(chunk)
            chunk, args = [], 0
        chunk.append(call)
        args += size
    if chunk:
        chunks.append(chunk)
    return chunks


def _packed(sha: str, chunk: list[_Call]) -> bytes:
    """EVALSHA of the batch script for `chunk` (its layout: BATCH_PUBLISH_SCRIPT)."""
    keys: list[Any] = []
    args: list[Any] = [len(chunk)]
    for call in chunk:
        keys += call.keys
        args += (len(call.keys), len(call.args), *call.args)
    return hiredis.pack_command(("EVALSHA", sha, len(keys), *keys, *args))  # type: ignore[no-any-return]


def _answer(chunk: list[_Call], reply: Any) -> None:
    """Each call of `chunk` its own reply, or all the error that refused the whole script."""
    if isinstance(reply, Exception):
        replies: list[Any] = [reply] * len(chunk)
        shared = len(chunk) > 1
    else:
        replies, shared = reply, False
    for call, own in zip(chunk, replies, strict=True):
        if call.future.done():
            continue  # its request was cancelled (the client left): the log is stored all the same
        if isinstance(own, Exception):
            call.future.set_result((None, own, shared))
        else:
            call.future.set_result((own, None, False))


def _own(exc: Exception) -> Exception:
    try:
        return copy.copy(exc)
    except Exception:  # an exception that cannot be rebuilt from its args: raised as it is
        return exc
