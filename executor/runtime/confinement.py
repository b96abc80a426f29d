"""What confines one handler process besides its namespaces: its cgroup (if the level has one) and
its host uid lease. Freezing between invocations and the idle-CPU check live here."""

from __future__ import annotations

import asyncio
import contextlib

from executor.runtime.cgroups import ProcessCgroup
from executor.runtime.sandbox_users import UidLease

# CPU a process may gain while it should be idle before it is killed (where nothing freezes it).
IDLE_CPU_SLACK_NS = 50_000_000
# A process in steady use (called again within this long of its last call) is frozen once it
# has been idle this long, not at the end of every invocation: a freeze and a thaw cost more
# than a no-op invocation. What a handler leaves running gets at most this much after each of
# those; any other invocation is followed by a freeze at once.
FREEZE_AFTER_S = 0.01


class Confinement:
    """One handler process's confinement: its cgroup (freeze, thaw, kill all) and its uid lease."""

    def __init__(self, cgroup: ProcessCgroup | None, uid: UidLease, freezes: bool) -> None:
        self.cgroup = cgroup
        self.uid = uid
        self._freezes = freezes and cgroup is not None
        self._frozen = False
        self._freezing: asyncio.TimerHandle | None = None
        self._idle_since_ns: int | None = None

    def pause(self, *, at_once: bool = True) -> None:
        """The invocation is over: no CPU until the next one (frozen now, or within
        ``FREEZE_AFTER_S`` unless the next one comes first; or at least watched)."""
        if self.cgroup is None:
            return
        if self._freezes and at_once:
            self._freeze()
        elif self._freezes:
            self._freezing = asyncio.get_running_loop().call_later(FREEZE_AFTER_S, self._freeze)
        else:
            self._idle_since_ns = self.cgroup.cpu_usage_ns()

    def _freeze(self) -> None:
        self._freezing = None
        if self.cgroup is not None:
            with contextlib.suppress(OSError):
                self.cgroup.freeze()
                self._frozen = True

    def resume(self) -> None:
        if self._freezing is not None:
            self._freezing.cancel()
            self._freezing = None
        elif self._frozen and self.cgroup is not None:
            self.cgroup.thaw()
            self._frozen = False
        self._idle_since_ns = None

    def cancel_freeze(self) -> None:
        """Before a kill: nothing is to be frozen any more (call from the event loop)."""
        if self._freezing is not None:
            self._freezing.cancel()
            self._freezing = None

    def used_cpu_while_idle(self) -> bool:
        """Did the process run while it had no invocation (threads left behind by a handler)?"""
        if self.cgroup is None or self._idle_since_ns is None:
            return False
        now = self.cgroup.cpu_usage_ns()
        return now is not None and now - self._idle_since_ns > IDLE_CPU_SLACK_NS

    def kill_all(self) -> None:
        if self.cgroup is not None:
            self.cgroup.kill_all()

    def oom_killed(self) -> bool:
        return self.cgroup is not None and self.cgroup.oom_killed()

    def release(self) -> None:
        """After the process is reaped: remove its cgroup, give its uid back."""
        if self.cgroup is not None:
            self.cgroup.remove()
        self.uid.release()
