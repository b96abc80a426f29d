"""Background work in one place: a set of tasks that logs any failure (a chore's exception is
never lost) and drains against a deadline, cancelling what is late."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

log = logging.getLogger("computebus")


class TaskSet:
    """A set of background tasks whose failures are logged and which drains with a deadline."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, work: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("%s task failed", self.name, exc_info=exc)

    async def wait(self, timeout_s: float | None = None) -> set[asyncio.Task[None]]:
        """Wait for every task (up to ``timeout_s``); the ones still running."""
        if not self._tasks:
            return set()
        _, late = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        return late

    async def drain(self, deadline_s: float) -> None:
        """Let the tasks finish within ``deadline_s``; cancel the rest and wait for them."""
        late = await self.wait(deadline_s)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late, timeout=5)
