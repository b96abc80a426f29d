"""Warm handler processes, pooled per revision: reuse an idle one, start one, or wait for one.

A revision key is (collection_topic, service, revision number), so a new revision never gets an
old revision's process. Idle processes are killed after ``idle_s``, and at once when they used
CPU while idle (where no freezer stops them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from executor.runtime.process import HandlerProcess
from executor.runtime.spares import Spares
from schemas.errors import ComputeError, Overloaded

RevisionKey = tuple[str, str, int]
Spawner = Callable[[], Awaitable[HandlerProcess]]
# Before a pool starts a process: is there room on the worker? It may free some by taking an idle
# process of another pool into the list (killed by the caller, outside any pool's lock).
Room = Callable[[list[HandlerProcess]], bool]

log = logging.getLogger("computebus.pool")


def _always(dead: list[HandlerProcess]) -> bool:
    return True


class ProcessCount:
    """How many processes a set of pools holds, kept as they change (not summed per question:
    a worker may hold thousands of pools)."""

    def __init__(self) -> None:
        self.value = 0


class RevisionPool:
    """The warm handler processes of one revision on this worker, lent one call at a time."""

    def __init__(
        self,
        spawn: Spawner,
        max_size: int,
        max_waiters: int,
        room: Room = _always,
        count: ProcessCount | None = None,
    ) -> None:
        self._count = count if count is not None else ProcessCount()
        self._spawn = spawn
        self._room = room
        self._max_size = max_size
        self._max_waiters = max_waiters
        self._idle: list[HandlerProcess] = []
        self._size = 0
        self._waiters = 0
        self._closed = False
        self._gone: ComputeError | None = None  # what waiters get once the function is deleted
        self._available = asyncio.Condition()

    @property
    def size(self) -> int:
        return self._size

    async def acquire(self, timeout_s: float) -> HandlerProcess:
        """A process for one invocation. Waiting for one ends with the invocation's own timeout
        (raises ``TimeoutError``), or when the function is deleted (raises what ``close`` got)."""
        if self._idle and self._uncontended():  # the common case, without lock or timer
            process = self._idle[-1]
            if process.well_behaved:
                return self._idle.pop()
        dead: list[HandlerProcess] = []
        try:
            async with asyncio.timeout(timeout_s):
                return await self._acquire(dead)
        finally:
            for process in dead:  # exited or closed its pipe while idle: kill what is left
                await process.kill()

    async def _acquire(self, dead: list[HandlerProcess]) -> HandlerProcess:
        # "dead" also takes processes that ran while idle: they are killed, never reused.
        async with self._available:
            while True:
                if self._gone is not None:
                    raise self._gone
                while self._idle:
                    process = self._idle.pop()
                    if process.well_behaved:
                        return process
                    dead.append(process)
                    self._resize(-1)
                if self._size < self._max_size:
                    if not self._room(dead):
                        raise Overloaded("the worker runs as many handler processes as it may")
                    self._resize(1)
                    break
                if self._waiters >= self._max_waiters:
                    raise Overloaded("too many invocations are waiting for this function")
                self._waiters += 1
                try:
                    await self._available.wait()
                except BaseException:
                    # Cancelled (its timeout) maybe just after a notify meant for it: pass it on.
                    self._available.notify()
                    raise
                finally:
                    self._waiters -= 1
        try:
            return await self._spawn()
        except BaseException:
            await self._forget_one()
            raise

    def _resize(self, change: int) -> None:
        self._size += change
        self._count.value += change

    def _uncontended(self) -> bool:
        """Nobody waits for a process and nobody holds the lock: the idle list may be used
        directly (nothing else runs between two awaits)."""
        return self._waiters == 0 and self._gone is None and not self._available.locked()

    def give_up_oldest_idle(self) -> HandlerProcess | None:
        """Hand over the idle process used longest ago (to make room for another pool); no
        waiter is left out: a pool with idle processes has none."""
        if not self._idle:
            return None
        oldest = min(self._idle, key=lambda p: p.last_used)
        self._idle.remove(oldest)
        self._resize(-1)
        return oldest

    @property
    def oldest_idle_use(self) -> float | None:
        return min((p.last_used for p in self._idle), default=None)

    async def release(self, process: HandlerProcess) -> None:
        """Give ``process`` back; a dead one (or any, once closed) is reaped and frees its slot."""
        keep = process.alive and not self._closed
        if keep and self._uncontended():  # nobody to wake
            self._idle.append(process)
            return
        async with self._available:
            if keep:
                self._idle.append(process)
            else:
                self._resize(-1)
            self._available.notify()
        if not keep:
            await process.kill()

    async def _forget_one(self) -> None:
        async with self._available:
            self._resize(-1)
            self._available.notify()

    async def reap_idle(self, idle_s: float) -> None:
        cutoff = time.monotonic() - idle_s
        async with self._available:
            stale = [p for p in self._idle if p.last_used < cutoff or not p.well_behaved]
            self._idle = [p for p in self._idle if p not in stale]
            self._resize(-len(stale))
            if stale:
                self._available.notify(len(stale))
        for process in stale:
            await process.kill()

    async def close(self, gone: ComputeError | None = None) -> None:
        """Stop the idle processes; those in use stop when released. With ``gone``, the
        invocations still waiting for a process get it as their answer instead of running."""
        self._closed = True
        async with self._available:
            idle, self._idle = self._idle, []
            self._resize(-len(idle))
            if gone is not None:
                self._gone = gone
                self._available.notify_all()
        for process in idle:
            await process.kill()


class InstancePool:
    """Every revision's pool on this worker, and at most ``max_processes`` processes in all,
    spares included: a new one takes the place of a spare, else of the idle process used longest
    ago, else the call is refused."""

    def __init__(
        self,
        *,
        max_per_revision: int,
        max_waiters: int,
        idle_s: float,
        max_processes: int,
        spares: Spares | None = None,
    ) -> None:
        self._spares = spares
        self._pools: dict[RevisionKey, RevisionPool] = {}
        self._count = ProcessCount()
        self._max_per_revision = max_per_revision
        self._max_waiters = max_waiters
        self._idle_s = idle_s
        self._max_processes = max_processes
        self._reaper: asyncio.Task[None] | None = None

    def for_revision(self, key: RevisionKey, spawn: Spawner) -> RevisionPool:
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = RevisionPool(
                spawn, self._max_per_revision, self._max_waiters, self._make_room, self._count
            )
        return pool

    def has_room(self) -> bool:
        """Whether one more process (of a pool, or a spare) may start."""
        spares = self._spares.count if self._spares is not None else 0
        return self._count.value + spares < self._max_processes

    def _make_room(self, dead: list[HandlerProcess]) -> bool:
        if self.has_room():
            return True
        spare = self._spares.give_up_one() if self._spares is not None else None
        if spare is not None:
            dead.append(spare)
            return True
        idle = [(t, pool) for pool in self._pools.values() if (t := pool.oldest_idle_use)]
        if not idle:
            return False
        victim = min(idle, key=lambda found: found[0])[1].give_up_oldest_idle()
        if victim is None:
            return False
        dead.append(victim)
        return True

    def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap_forever())
        if self._spares is not None:
            self._spares.start(self.has_room)

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(min(5.0, self._idle_s / 2))
            # Empty pools stay: a prepared revision holds on to its pool (retire drops it).
            for pool in list(self._pools.values()):
                try:
                    await pool.reap_idle(self._idle_s)
                except Exception:  # one pool's trouble must not end the reaping of all
                    log.exception("reaping idle processes failed")

    async def retire(self, key: RevisionKey, gone: ComputeError | None = None) -> None:
        pool = self._pools.pop(key, None)
        if pool is not None:
            await pool.close(gone)

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for pool in list(self._pools.values()):
            await pool.close()
        self._pools.clear()
        if self._spares is not None:
            await self._spares.close()
