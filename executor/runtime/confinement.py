"""What confines one handler process besides its namespaces: its cgroup (if the level has one) and
its host uid lease. Freezing between invocations and the idle-CPU check live here."""

from __future__ import annotations

import contextlib

from executor.runtime.cgroups import ProcessCgroup
from executor.runtime.sandbox_users import UidLease

# CPU a process may gain while it should be idle before it is killed (where nothing freezes it).
IDLE_CPU_SLACK_NS = 50_000_000


class Confinement:
    """One handler process's confinement: its cgroup (freeze, thaw, kill all) and its uid lease."""

    def __init__(self, cgroup: ProcessCgroup | None, uid: UidLease, freezes: bool) -> None:
        self.cgroup = cgroup
        self.uid = uid
        self._freezes = freezes and cgroup is not None
        self._frozen = False
        self._idle_since_ns: int | None = None

    def pause(self) -> None:
        """The invocation is over: no CPU until the next one (frozen, or at least watched)."""
        if self.cgroup is None:
            return
        if self._freezes:
            with contextlib.suppress(OSError):
                self.cgroup.freeze()
                self._frozen = True
        else:
            self._idle_since_ns = self.cgroup.cpu_usage_ns()

    def resume(self) -> None:
        if self._frozen and self.cgroup is not None:
            self.cgroup.thaw()
            self._frozen = False
        self._idle_since_ns = None

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
