"""The sandbox around every handler process: bubblewrap namespaces, a cgroup per process, rlimits.

Levels, strongest first (reported by ``/readyz``):

- ``bwrap+cgroup``: own user, pid, network, mount, IPC and UTS namespaces; only the runtime's
  read-only paths and this revision's workspace (read-only) are visible; no capabilities; an
  unprivileged uid; a memory and a pids limit per process; killing the sandbox kills everything
  the handler started.
- ``bwrap``: the same without cgroups (memory through RLIMIT_AS for Python and
  ``--max-old-space-size`` for Node; no process-count limit for root).
- ``cgroup``: no namespaces; memory and pids limits, and a kill that reaches every process.
- ``rlimit``: rlimits and a process group only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("computebus.sandbox")

MIB = 1024 * 1024
WORKSPACE_INSIDE = "/workspace"
BOOTSTRAP_INSIDE = "/opt/computebus"
UNPRIVILEGED_ID = "65534"  # nobody
PIDS_MAX = 64
TMP_BYTES = 64 * MIB
FSIZE_BYTES = 64 * MIB
NOFILE = 1024
_CGROUP_ROOT = Path("/sys/fs/cgroup")
# Runtime paths that exist on most systems; only the ones present are bound (read-only).
_SYSTEM_PATHS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc/alternatives")
# Extra read-only files a function with network needs to resolve names and trust certificates.
_NETWORK_PATHS = (
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/ssl",
    "/etc/ca-certificates",
)


@dataclass(frozen=True)
class Limits:
    memory_mb: int
    read_only_fs: bool = True
    network: bool = False


class ProcessCgroup:
    """One handler process's cgroup(s): v2 has one directory, v1 one per controller."""

    def __init__(self, dirs: list[Path], v2: bool) -> None:
        self.dirs = dirs
        self.v2 = v2

    def enter(self) -> None:
        """Move the calling process in; runs in the child between fork and exec."""
        pid = str(os.getpid()).encode()
        for d in self.dirs:
            fd = os.open(d / "cgroup.procs", os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)

    def oom_killed(self) -> bool:
        """Did the kernel kill a process here for exceeding the memory limit?"""
        name = "memory.events" if self.v2 else "memory.oom_control"
        for d in self.dirs:
            with contextlib.suppress(OSError):
                for line in (d / name).read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill" and int(value or 0) > 0:
                        return True
        return False

    def pids(self) -> set[int]:
        found: set[int] = set()
        for d in self.dirs:
            with contextlib.suppress(OSError, ValueError):
                found.update(int(p) for p in (d / "cgroup.procs").read_text().split())
        return found

    def kill_all(self) -> None:
        """SIGKILL every process inside until none is left (a fork bomb is bounded by pids.max)."""
        if self.v2:
            with contextlib.suppress(OSError):
                (self.dirs[0] / "cgroup.kill").write_text("1")
        for _ in range(200):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)
        log.error("processes %s survived SIGKILL in %s", sorted(self.pids()), self.dirs)

    def remove(self) -> None:
        for d in self.dirs:
            with contextlib.suppress(OSError):
                d.rmdir()


class Cgroups:
    """This worker's parent cgroups, under its own, in which each handler process gets one."""

    def __init__(self, parents: dict[str, Path], v2: bool) -> None:
        self.parents = parents  # controller ("memory", "pids", or "" for v2) -> directory
        self.v2 = v2
        self._count = 0

    @classmethod
    def create(cls, name: str) -> Cgroups | None:
        """Set up the parents, or None when this machine does not let us (then rlimits only)."""
        try:
            v2 = cls._create_v2(name)
            if v2 is not None:
                return v2
            return cls._create_v1(name)
        except OSError as exc:
            log.warning("cgroups are not usable here (%s)", exc)
            return None

    @classmethod
    def _create_v2(cls, name: str) -> Cgroups | None:
        if not (_CGROUP_ROOT / "cgroup.controllers").exists():
            return None
        own = _own_cgroup("")
        if own is None:
            return None
        parent = _CGROUP_ROOT / own.lstrip("/") / name
        if not {"memory", "pids"} <= set(
            (parent.parent / "cgroup.controllers").read_text().split()
        ):
            return None
        parent.mkdir(exist_ok=True)
        (parent / "cgroup.subtree_control").write_text("+memory +pids")
        return cls({"": parent}, v2=True)

    @classmethod
    def _create_v1(cls, name: str) -> Cgroups | None:
        parents: dict[str, Path] = {}
        for controller in ("memory", "pids"):
            mount = _CGROUP_ROOT / controller
            own = _own_cgroup(controller)
            if own is None or not (mount / "cgroup.procs").exists():
                return None
            parent = mount / own.lstrip("/") / name
            parent.mkdir(exist_ok=True)
            parents[controller] = parent
        return cls(parents, v2=False)

    def for_process(self, limits: Limits) -> ProcessCgroup:
        self._count += 1
        leaf = f"p{os.getpid()}-{self._count}"
        memory = str(limits.memory_mb * MIB)
        dirs: list[Path] = []
        try:
            if self.v2:
                d = self.parents[""] / leaf
                d.mkdir()
                dirs.append(d)
                (d / "memory.max").write_text(memory)
                with contextlib.suppress(OSError):  # no swap accounting: nothing to cap
                    (d / "memory.swap.max").write_text("0")
                (d / "pids.max").write_text(str(PIDS_MAX))
            else:
                m = self.parents["memory"] / leaf
                m.mkdir()
                dirs.append(m)
                (m / "memory.limit_in_bytes").write_text(memory)
                with contextlib.suppress(OSError):
                    (m / "memory.memsw.limit_in_bytes").write_text(memory)
                p = self.parents["pids"] / leaf
                p.mkdir()
                dirs.append(p)
                (p / "pids.max").write_text(str(PIDS_MAX))
        except OSError:
            ProcessCgroup(dirs, self.v2).remove()
            raise
        return ProcessCgroup(dirs, self.v2)

    def remove(self) -> None:
        for parent in self.parents.values():
            for leaf in parent.glob("p*"):
                ProcessCgroup([leaf], self.v2).kill_all()
                with contextlib.suppress(OSError):
                    leaf.rmdir()
            with contextlib.suppress(OSError):
                parent.rmdir()


def _own_cgroup(controller: str) -> str | None:
    """This process's cgroup path for ``controller`` ("" for the v2 hierarchy)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, names, path = line.split(":", 2)
            if (controller == "" and names == "") or controller in names.split(","):
                return path
    return None


@dataclass(frozen=True)
class LaunchPlan:
    """How to start one revision's handler processes (the same for each of them)."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    limits: Limits
    python: bool


class Sandbox:
    def __init__(self, bwrap: str | None, cgroups: Cgroups | None) -> None:
        self.bwrap = bwrap
        self.cgroups = cgroups

    @classmethod
    def detect(cls, name: str) -> Sandbox:
        """Use what this machine offers; warn about what is missing."""
        bwrap = _working_bwrap()
        cgroups = Cgroups.create(name)
        sandbox = cls(bwrap, cgroups)
        if sandbox.level != "bwrap+cgroup":
            log.warning(
                "handler isolation is %r: %s%s",
                sandbox.level,
                "" if bwrap else "bwrap (package bubblewrap) is missing or does not work; ",
                "" if cgroups else "no writable memory+pids cgroup; ",
            )
        return sandbox

    @property
    def level(self) -> str:
        parts = [p for p, on in (("bwrap", self.bwrap), ("cgroup", self.cgroups)) if on]
        return "+".join(parts) or "rlimit"

    def plan(
        self,
        runtime_argv: Callable[[str, str], list[str]],
        bootstrap: Path,
        workspace: Path,
        interpreter_root: Path | None,
        env: dict[str, str],
        limits: Limits,
        python: bool,
    ) -> LaunchPlan:
        """``runtime_argv(bootstrap_path, workspace_path)`` builds the command as seen inside."""
        if self.bwrap is None:
            argv = runtime_argv(str(bootstrap), str(workspace))
            return LaunchPlan(argv, env, str(workspace), limits, python)
        inside_bootstrap = f"{BOOTSTRAP_INSIDE}/{bootstrap.name}"
        # The environment reaches the handler through bwrap's own (which is exactly ``env``), not
        # --setenv: values on a command line are readable by anyone through ps.
        args = [
            self.bwrap,
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",  # no nested user namespace: it would grant mount rights inside
            *(["--share-net"] if limits.network else []),
            "--die-with-parent",
            "--new-session",
            "--uid",
            UNPRIVILEGED_ID,
            "--gid",
            UNPRIVILEGED_ID,
            "--cap-drop",
            "ALL",
        ]
        for path in _SYSTEM_PATHS:
            args += _bind_as_is(path)
        if interpreter_root is not None and not _covered(interpreter_root):
            args += ["--ro-bind", str(interpreter_root), str(interpreter_root)]
        if limits.network:
            for path in _NETWORK_PATHS:
                args += _bind_as_is(path)
        args += [
            "--ro-bind",
            str(bootstrap),
            inside_bootstrap,
            "--ro-bind",
            str(workspace),
            WORKSPACE_INSIDE,
            "--proc",
            "/proc",
            "--dev",
            "/dev",
        ]
        if not limits.read_only_fs:
            args += ["--size", str(TMP_BYTES), "--perms", "1777", "--tmpfs", "/tmp"]
        # /dev stays usable (/dev/null, /dev/urandom) but nothing can be created there (/dev/shm).
        args += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", WORKSPACE_INSIDE, "--"]
        argv = args + runtime_argv(inside_bootstrap, WORKSPACE_INSIDE)
        return LaunchPlan(argv, env, str(workspace), limits, python)

    def new_cgroup(self, limits: Limits) -> ProcessCgroup | None:
        """The process's cgroup; raises OSError rather than start a process without the limits
        its level promises."""
        if self.cgroups is None:
            return None
        return self.cgroups.for_process(limits)

    def preexec(self, plan: LaunchPlan, cgroup: ProcessCgroup | None) -> Callable[[], None]:
        """What the child does between fork and exec: enter its cgroup, set its rlimits."""
        rlimits = [
            (resource.RLIMIT_CORE, 0),
            (resource.RLIMIT_NOFILE, NOFILE),
            (resource.RLIMIT_FSIZE, FSIZE_BYTES),
        ]
        if cgroup is None and plan.python:
            # Without a memory cgroup, bound Python by address space (Node's V8 reserves far more
            # address space than it uses; it is bounded by --max-old-space-size instead).
            rlimits.append((resource.RLIMIT_AS, (plan.limits.memory_mb + 64) * MIB))

        def run() -> None:
            if cgroup is not None:
                cgroup.enter()
            for which, value in rlimits:
                resource.setrlimit(which, (value, value))

        return run

    def close(self) -> None:
        if self.cgroups is not None:
            self.cgroups.remove()


def _bind_as_is(path: str) -> list[str]:
    """Bind ``path`` read-only at the same place; a symlink (``/lib -> usr/lib``) stays one."""
    p = Path(path)
    if p.is_symlink():
        return ["--symlink", os.readlink(p), path]
    if p.exists():
        return ["--ro-bind", path, path]
    return []


def _covered(path: Path) -> bool:
    """Is ``path`` already inside one of the bound system paths?"""
    resolved = str(path.resolve())
    return any(resolved == s or resolved.startswith(s + "/") for s in ("/usr", "/bin", "/lib"))


def _working_bwrap() -> str | None:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None
    probe = [
        bwrap,
        "--unshare-all",
        "--die-with-parent",
        "--uid",
        UNPRIVILEGED_ID,
        "--gid",
        UNPRIVILEGED_ID,
        "--cap-drop",
        "ALL",
        "--clearenv",
    ]
    for path in _SYSTEM_PATHS:
        probe += _bind_as_is(path)
    probe += ["--proc", "/proc", "--dev", "/dev", "--", "/bin/sh", "-c", "exit 0"]
    try:
        done = subprocess.run(probe, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("bwrap does not start here: %s", exc)
        return None
    if done.returncode != 0:
        log.warning("bwrap does not work here: %s", done.stderr.decode(errors="replace").strip())
        return None
    return bwrap


def interpreter_root() -> Path:
    """Where this Python lives (bound read-only into Python sandboxes)."""
    return Path(sys.base_prefix)
