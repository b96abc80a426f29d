"""Spare handler processes, started ahead of time so that a new revision's first process is
already running: per runtime and limits, in exactly the sandbox, cgroup, uid lease, seccomp
filter and limits any handler process gets. What a spare lacks is a revision: under bubblewrap
its workspace is an empty directory of its own, bound read-only, that is filled (hard links) from
the revision's unpacked bundle when it is taken; then it gets its assignment (handler file,
export, env_vars) like any new process, and is that revision's for good. Without bubblewrap it
is assigned the revision's workspace path itself.

A spare serves at most one revision; a taken one is replaced in the background. Spares count
toward the worker's process limit: one is made only while there is room, and the first to go
when a revision needs the room.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from executor.bundle.unpack import remove_tree
from executor.runtime.bwrap import WORKSPACE_INSIDE
from executor.runtime.launch import Handler, assign, launch, launch_plan
from executor.runtime.limits import Limits
from executor.runtime.process import HandlerProcess, ProcessGone
from executor.runtime.sandbox import Sandbox

log = logging.getLogger("computebus.spares")

SpareKey = tuple[str, Limits]  # runtime, limits
DEFAULT_MEMORY_MB = 256  # the default size, 256MB: the key kept from the start
_MAX_KEYS_PER_RUNTIME = 2  # kinds of spare kept (the most recently asked for)
_DIR_PREFIX = ".spares-"
# A new spare starts this long after one was taken: its interpreter's start would otherwise take
# the CPU from the taken one's handler loading and first calls.
_REFILL_DELAY_S = 0.2
_HOST = socket.gethostname().replace("/", "_")


class SpareProcess(HandlerProcess):
    """A spare: under bubblewrap its workspace directory is its own, removed with it."""

    own_dir: Path | None = None

    async def kill(self) -> None:
        await super().kill()
        own, self.own_dir = self.own_dir, None
        if own is not None:
            await asyncio.to_thread(remove_tree, own)


class Spares:
    """The worker's spare processes, ``per_key`` of each kind in use."""

    def __init__(
        self,
        sandbox: Sandbox,
        workspaces: Path,
        per_key: int,
        *,
        log_cap: int,
        max_reply_bytes: int,
    ) -> None:
        self.sandbox = sandbox
        self.per_key = per_key
        self._log_cap = log_cap
        self._max_reply_bytes = max_reply_bytes
        # Beside the workspaces, for hard links; this worker's own (others may share the root).
        self._dirs = workspaces / f"{_DIR_PREFIX}{_HOST}-{os.getpid()}"
        self._ready: OrderedDict[SpareKey, list[SpareProcess]] = OrderedDict()
        self._starting = 0
        self._room: Callable[[], bool] = lambda: False
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._own_dirs = per_key > 0 and sandbox.bwrap is not None
        if self._own_dirs:
            _remove_stale(workspaces)
            self._dirs.mkdir(mode=0o755, exist_ok=True)

    @property
    def count(self) -> int:
        """Spares alive or starting: processes of this worker like any other."""
        return self._starting + sum(len(spares) for spares in self._ready.values())

    def by_runtime(self) -> dict[str, int]:
        """Spares ready, per runtime."""
        counts: dict[str, int] = {}
        for (runtime, _limits), spares in list(self._ready.items()):
            counts[runtime] = counts.get(runtime, 0) + len(spares)
        return counts

    def start(self, room: Callable[[], bool]) -> None:
        """Start the default kind for each runtime; ``room`` says whether the worker may start
        one more process."""
        self._room = room
        for runtime in self.sandbox.interpreters:
            self._want((runtime, Limits(DEFAULT_MEMORY_MB)))

    async def assigned(
        self, runtime: str, limits: Limits, workspace: Path, handler: Handler
    ) -> SpareProcess | None:
        """A spare of that kind made the revision's (its files and assignment), or None when
        there is none (or it could not be: it is killed, and the caller starts a new one)."""
        spare = self.take(runtime, limits)
        if spare is None:
            self._want((runtime, limits), _REFILL_DELAY_S)
            return None
        try:
            if spare.own_dir is not None:
                await asyncio.to_thread(fill, workspace, spare.own_dir)
                await assign(spare, WORKSPACE_INSIDE, handler)
            else:
                await assign(spare, str(workspace), handler)
        except (OSError, ProcessGone) as exc:  # TimeoutError is an OSError
            log.warning("a spare %s process could not be assigned: %r", runtime, exc)
            await spare.kill()
            return None
        except BaseException:
            await spare.kill()
            raise
        finally:
            self._want((runtime, limits), _REFILL_DELAY_S)
        return spare

    def take(self, runtime: str, limits: Limits) -> SpareProcess | None:
        """A live spare of that kind, now the caller's (to be replaced), or None."""
        if not self.per_key or self._closed:
            return None
        spares = self._ready.get((runtime, limits), [])
        while spares:
            spare = spares.pop(0)
            if spare.alive:
                return spare
            self._background(spare.kill())
        return None

    def give_up_one(self) -> SpareProcess | None:
        """A spare of the kind used longest ago, for the caller to kill (it needs the room)."""
        for spares in self._ready.values():
            if spares:
                return spares.pop(0)
        return None

    def _want(self, key: SpareKey, delay_s: float = 0.0) -> None:
        if not self.per_key or self._closed:
            return
        self._ready.setdefault(key, [])
        self._ready.move_to_end(key)
        same_runtime = [k for k in self._ready if k[0] == key[0]]
        for old in same_runtime[:-_MAX_KEYS_PER_RUNTIME]:
            for spare in self._ready.pop(old):
                self._background(spare.kill())
        self._background(self._refill(key, delay_s))

    async def _refill(self, key: SpareKey, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        while (
            not self._closed
            and key in self._ready
            and len(self._ready[key]) < self.per_key
            and self._room()
        ):
            self._starting += 1
            try:
                spare = await self._spawn(*key)
            finally:
                self._starting -= 1
            if self._closed or key not in self._ready:
                await spare.kill()
                return
            self._ready[key].append(spare)

    async def _spawn(self, runtime: str, limits: Limits) -> SpareProcess:
        own = None
        if self.sandbox.bwrap is not None:
            own = Path(tempfile.mkdtemp(prefix=f"{runtime}-", dir=self._dirs))
            own.chmod(0o755)
            workspace = own
        else:
            workspace = self._dirs.parent  # it enters the revision's own at assignment
        try:
            plan = launch_plan(self.sandbox, runtime=runtime, workspace=workspace, limits=limits)
            spare = await launch(
                self.sandbox,
                plan,
                log_cap=self._log_cap,
                max_reply_bytes=self._max_reply_bytes,
                kind=SpareProcess,
                in_thread=True,  # off the loop: invocations run meanwhile
            )
        except BaseException:
            if own is not None:
                remove_tree(own)
            raise
        assert isinstance(spare, SpareProcess)
        spare.own_dir = own
        return spare

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("a spare handler process failed to start: %r", task.exception())

    async def close(self) -> None:
        """Stop making spares and kill every one left (the taken ones are their pools')."""
        self._closed = True
        for task in list(self._tasks):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task
        spares = [s for group in self._ready.values() for s in group]
        self._ready.clear()
        for spare in spares:
            await spare.kill()
        if self._own_dirs:
            # Taken ones still running remove their own when they are killed; a directory left
            # behind is removed by the next worker on this host.
            with contextlib.suppress(OSError):
                self._dirs.rmdir()


def fill(workspace: Path, own: Path) -> None:
    """Put a revision's unpacked workspace into a spare's directory: hard links (a copy where
    links cannot be made), read-only like the original."""
    shutil.copytree(workspace, own, symlinks=True, copy_function=_link, dirs_exist_ok=True)


def _link(source: str, target: str) -> None:
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError:
        shutil.copy2(source, target, follow_symlinks=False)


def _remove_stale(workspaces: Path) -> None:
    """Spare directories of this host's workers that are gone (killed outright)."""
    for path in workspaces.glob(f"{_DIR_PREFIX}{_HOST}-*"):
        pid = path.name[len(f"{_DIR_PREFIX}{_HOST}-") :]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            remove_tree(path)
        except OSError:
            continue
