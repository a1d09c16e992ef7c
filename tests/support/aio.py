"""Waiting without sleeping: on state another process holds, and on clients run beside a test."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any


async def poll_until(check: Any, timeout: float = 15, interval: float = 0.05) -> None:
    """For state another process holds and announces no event for (/metrics, /readyz):
    ask again until `await check()` is true, within a bounded time."""
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - no event crosses the process boundary
            await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def background(*coros: Any) -> AsyncIterator[list[asyncio.Task[Any]]]:
    """Run clients beside the test body; whatever happens, none outlives the test."""
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
