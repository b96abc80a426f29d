"""The sandbox around every handler process: bubblewrap namespaces, a cgroup per process, an
unprivileged host uid, a seccomp filter, rlimits.

Levels, strongest first (reported by ``/readyz``, with the gaps of the level in ``isolation_gaps``):

- ``bwrap+cgroup``: own pid, network, mount, IPC and UTS namespaces; only the runtime's read-only
  paths and this revision's workspace (read-only) are visible; no capabilities; an unprivileged
  host uid; the seccomp filter; memory, pids and one-CPU limits per process; frozen between
  invocations; killing the sandbox kills everything the handler started.
- ``bwrap``: the same without cgroups (memory through RLIMIT_AS for Python and
  ``--max-old-space-size`` for Node; processes through RLIMIT_NPROC of the sandbox's own uid).
- ``cgroup``: no namespaces; the uid, the seccomp filter, the cgroup limits, freezing, and a kill
  that reaches every process.
- ``rlimit``: the uid, the seccomp filter, rlimits and a process group only.

A worker running as root starts bubblewrap as root without a user namespace, so that it can bind
what only root can reach, and the handler's command is ``setpriv`` dropping to the process's own
uid (``sandbox_users``) before the interpreter runs. A worker that is not root runs bubblewrap in
a user namespace that maps uid 65534 inside to its own uid.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from executor.runtime.bwrap import (
    BOOTSTRAPS_INSIDE,
    SEAL,
    WORKSPACE_INSIDE,
    namespace_args,
    sandbox_view,
    working_bwrap,
)
from executor.runtime.cgroups import Cgroups
from executor.runtime.child_setup import child_setup
from executor.runtime.commands import stage_bootstraps
from executor.runtime.confinement import Confinement
from executor.runtime.interpreters import Interpreter
from executor.runtime.limits import Limits
from executor.runtime.sandbox_users import SandboxUsers
from executor.runtime.syscall_filter import compile_filter
from executor.settings import ISOLATION_LEVELS
from schemas.errors import SetupError

log = logging.getLogger("computebus.sandbox")

LEVELS = ISOLATION_LEVELS[1:]  # strongest first


class SandboxUnusable(SetupError):
    """The worker's sandbox cannot run handlers here (raised at start-up, naming the fix)."""


class RuntimeMissing(SetupError):
    """A function's runtime is not installed on this worker."""


@dataclass(frozen=True)
class LaunchPlan:
    """How to start one revision's handler processes (the same for each of them)."""

    command: list[str]  # the interpreter's argv, as seen where it runs
    bwrap_args: list[str] | None  # bubblewrap's options up to the per-process ones (a memfd)
    env: dict[
        str, str
    ]  # of the process started (under bubblewrap, the handler's is in its options)
    cwd: str
    workspace: str  # the workspace as the process sees it
    limits: Limits
    python: bool


@dataclass(frozen=True)
class Spawn:
    """One process's start: its argv, the setup fds to pass (bwrap's options and filter) and what to
    do before exec."""

    argv: list[str]
    setup_fds: tuple[int, ...]
    preexec: Callable[[], None]


class Sandbox:
    """The worker's sandbox: its isolation level, the interpreters, and how a process is started
    in it."""

    def __init__(
        self,
        *,
        bwrap: str | None,
        cgroups: Cgroups | None,
        users: SandboxUsers,
        seccomp: bytes | None,
        interpreters: dict[str, Interpreter],
        setpriv: str | None = None,
        capped: bool = False,
    ) -> None:
        self.bwrap = bwrap
        self.cgroups = cgroups
        self.users = users
        self.seccomp = seccomp
        self.interpreters = interpreters
        self.setpriv = setpriv
        self.capped = capped
        self.bootstraps = stage_bootstraps()

    @classmethod
    def detect(
        cls,
        name: str,
        interpreters: dict[str, Interpreter],
        *,
        max_level: str = LEVELS[0],
        users: SandboxUsers | None = None,
    ) -> Sandbox:
        """Use what this machine offers, up to ``max_level``; warn about what is missing."""
        users = users or SandboxUsers.for_this_process()
        allowed = LEVELS[LEVELS.index(max_level) :]
        setpriv = shutil.which("setpriv") if users.switches else None
        bwrap = None
        if any(level.startswith("bwrap") for level in allowed):
            bwrap = working_bwrap(users.switches)
            if bwrap is not None and users.switches and setpriv is None:
                log.warning("bwrap is not used: a root worker needs setpriv (util-linux)")
                bwrap = None
        cgroups = Cgroups.create(name) if any("cgroup" in lv for lv in allowed) else None
        # The strongest allowed level whose parts are here; the parts it does not use go.
        level = next(
            lv
            for lv in allowed
            if ("bwrap" not in lv or bwrap) and ("cgroup" not in lv or cgroups is not None)
        )
        if "bwrap" not in level:
            bwrap = None
        if "cgroup" not in level and cgroups is not None:
            cgroups.remove()
            cgroups = None
        sandbox = cls(
            bwrap=bwrap,
            cgroups=cgroups,
            users=users,
            seccomp=compile_filter(),
            interpreters=interpreters,
            setpriv=setpriv,
            capped=max_level != LEVELS[0],
        )
        if sandbox.gaps:
            log.warning("handler isolation is %r: %s", sandbox.level, "; ".join(sandbox.gaps))
        return sandbox

    @classmethod
    def bare(cls, interpreters: dict[str, Interpreter]) -> Sandbox:
        """No sandbox at all, under the worker's own uid: the baseline of ``bench --sandbox``."""
        return cls(
            bwrap=None,
            cgroups=None,
            users=SandboxUsers.own(),
            seccomp=None,
            interpreters=interpreters,
        )

    @property
    def level(self) -> str:
        parts = [p for p, on in (("bwrap", self.bwrap), ("cgroup", self.cgroups)) if on]
        return "+".join(parts) or "rlimit"

    @property
    def gaps(self) -> list[str]:
        """What this level does not give, in words an operator can act on."""
        gaps: list[str] = []
        if self.capped:
            gaps.append(f"isolation capped at {self.level} by COMPUTEBUS_ISOLATION")
        if self.bwrap is None:
            why = "not used" if self.capped else "missing (package bubblewrap)"
            gaps.append(f"bubblewrap {why}: handlers see the host's files and network")
        if self.cgroups is None:
            why = "not used" if self.capped else "no writable memory+pids cgroup"
            gaps.append(f"cgroups {why}: memory by rlimit, no freeze between invocations")
        else:
            features = self.cgroups.features
            if not features.freeze:
                gaps.append("no cgroup freezer: a process that uses CPU while idle is killed")
            if not features.cpu_limit:
                gaps.append("no cpu cgroup: a handler may use every core during its timeout")
        if self.seccomp is None:
            gaps.append("no seccomp filter (libseccomp2 is missing)")
        if not self.users.switches:
            gaps.append(f"the worker is not root: every sandbox runs as its uid {self.users.first}")
        return gaps

    def plan(
        self,
        runtime: str,
        command: Callable[[str, str, str], list[str]],
        workspace: Path,
        env: dict[str, str],
        limits: Limits,
    ) -> LaunchPlan:
        """``command(interpreter, bootstraps, workspace)`` builds the argv from the paths as the
        process sees them; ``env`` is the runtime's environment (the function's own comes with
        its assignment). Raises ``RuntimeMissing`` when the runtime is not installed."""
        interp = self.interpreters.get(runtime)
        if interp is None:
            raise RuntimeMissing(f"runtime {runtime} is not installed on this worker")
        python = runtime == "python"
        if self.bwrap is None:
            argv = command(str(interp.executable), str(self.bootstraps), str(workspace))
            return LaunchPlan(argv, None, env, str(workspace), str(workspace), limits, python)
        args, exe = sandbox_view(
            self._namespaces(limits), runtime, interp, self.bootstraps, workspace, env, limits
        )
        argv = command(exe, BOOTSTRAPS_INSIDE, WORKSPACE_INSIDE)
        return LaunchPlan(argv, args, {}, str(workspace), WORKSPACE_INSIDE, limits, python)

    def _namespaces(self, limits: Limits) -> list[str]:
        return namespace_args(network=limits.network, root=self.users.switches)

    def confine(self, limits: Limits) -> Confinement:
        """A fresh cgroup and uid for one process; raises OSError (or NoSandboxUser) rather than
        start a process without what its level promises."""
        cgroup = self.cgroups.for_process(limits.memory_mb) if self.cgroups else None
        try:
            uid = self.users.lease()
        except BaseException:
            if cgroup is not None:
                cgroup.remove()
            raise
        freezes = self.cgroups is not None and self.cgroups.features.freeze
        return Confinement(cgroup, uid, freezes)

    def spawn(self, plan: LaunchPlan, confinement: Confinement) -> Spawn:
        """The argv and setup fds of one process (its uid is only known now)."""
        uid = confinement.uid.uid
        preexec = child_setup(
            cgroup=confinement.cgroup,
            uid=uid if self.bwrap is None and self.users.switches else None,
            own_uid=self.users.switches,
            memory_mb=plan.limits.memory_mb if plan.python else None,
            seccomp=self.seccomp if self.bwrap is None else None,
            no_new_privs=self.bwrap is None,
        )
        if plan.bwrap_args is None or self.bwrap is None:
            return Spawn(plan.command, (), preexec)
        args = list(plan.bwrap_args)
        fds: list[int] = []
        try:
            if self.seccomp is not None:
                fds.append(_fd_holding(self.seccomp))
                args += ["--seccomp", str(fds[-1])]
            args += SEAL
            fds.append(_fd_holding(b"\0".join(a.encode() for a in args) + b"\0"))
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        command = plan.command
        if self.users.switches:
            assert self.setpriv is not None
            command = [
                self.setpriv,
                f"--reuid={uid}",
                f"--regid={uid}",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--",
                *command,
            ]
        return Spawn([self.bwrap, "--args", str(fds[-1]), "--", *command], tuple(fds), preexec)

    def close(self) -> None:
        if self.cgroups is not None:
            self.cgroups.remove()
        shutil.rmtree(self.bootstraps, ignore_errors=True)


def _fd_holding(data: bytes) -> int:
    """A file descriptor that reads ``data`` from its start (bwrap reads it at start-up); a
    memfd, so that it holds any size without a reader on the other end."""
    fd = os.memfd_create("computebus-sandbox-setup", os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd
