"""A cgroup per handler process, under the worker's own: limits (memory, pids, one CPU), a freezer
(no CPU between invocations), CPU accounting, and a kill that reaches everything inside.

v2 gives one directory per process; v1 one per controller. ``memory`` and ``pids`` are required
for the ``cgroup`` levels; ``freezer`` and ``cpu`` are used where present and their absence is
reported as a gap (see ``CgroupFeatures``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("computebus.sandbox")

MIB = 1024 * 1024
PIDS_MAX = 64
CPU_PERIOD_US = 100_000  # with a quota of one period: at most one CPU per handler process
_ROOT = Path("/sys/fs/cgroup")
_REQUIRED_V1 = ("memory", "pids")
_OPTIONAL_V1 = ("freezer", "cpu", "cpuacct")


@dataclass(frozen=True)
class CgroupFeatures:
    """What this machine's cgroups offer the sandbox (memory, pids, freezer, CPU)."""

    freeze: bool
    cpu_limit: bool
    cpu_usage: bool


class ProcessCgroup:
    """One handler process's cgroup: ``dirs`` maps a v1 controller (or "" for v2) to its dir."""

    def __init__(self, dirs: dict[str, Path], v2: bool) -> None:
        self.dirs = dirs
        self.v2 = v2
        self._freeze_fd: int | None = None  # kept open: it is written twice per invocation

    def enter(self) -> None:
        """Move the calling process in; runs in the child between fork and exec."""
        pid = str(os.getpid()).encode()
        for d in self._unique_dirs():
            fd = os.open(d / "cgroup.procs", os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)

    def freeze(self) -> None:
        self._set_frozen(True)

    def thaw(self) -> None:
        self._set_frozen(False)

    def _set_frozen(self, frozen: bool) -> None:
        if self._freeze_fd is None:
            if self.v2:
                path = self.dirs[""] / "cgroup.freeze"
            elif "freezer" in self.dirs:
                path = self.dirs["freezer"] / "freezer.state"
            else:
                return
            self._freeze_fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        if self.v2:
            os.write(self._freeze_fd, b"1" if frozen else b"0")
        else:
            os.write(self._freeze_fd, b"FROZEN" if frozen else b"THAWED")

    def cpu_usage_ns(self) -> int | None:
        """CPU time used by everything in the cgroup so far, or None where it is not counted."""
        with contextlib.suppress(OSError, ValueError):
            if self.v2:
                for line in (self.dirs[""] / "cpu.stat").read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "usage_usec":
                        return int(value) * 1000
            elif "cpuacct" in self.dirs:
                return int((self.dirs["cpuacct"] / "cpuacct.usage").read_text())
        return None

    def oom_killed(self) -> bool:
        """Did the kernel kill a process here for exceeding the memory limit?"""
        d = self.dirs.get("" if self.v2 else "memory")
        name = "memory.events" if self.v2 else "memory.oom_control"
        if d is None:
            return False
        with contextlib.suppress(OSError):
            for line in (d / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value or 0) > 0:
                    return True
        return False

    def pids(self) -> set[int]:
        found: set[int] = set()
        for d in self._unique_dirs():
            with contextlib.suppress(OSError, ValueError):
                found.update(int(p) for p in (d / "cgroup.procs").read_text().split())
        return found

    def kill_all(self) -> None:
        """SIGKILL every process inside until none is left (a fork bomb is bounded by pids.max).
        A frozen v1 task only dies once thawed, so the kill comes first and the thaw after it."""
        if self.v2:
            with contextlib.suppress(OSError):
                (self.dirs[""] / "cgroup.kill").write_text("1")
        for _ in range(200):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                self.thaw()
            time.sleep(0.005)
        log.error("processes %s survived SIGKILL in %s", sorted(self.pids()), self.dirs)

    def remove(self) -> None:
        if self._freeze_fd is not None:
            os.close(self._freeze_fd)
            self._freeze_fd = None
        for d in self._unique_dirs():
            with contextlib.suppress(OSError):
                d.rmdir()

    def _unique_dirs(self) -> list[Path]:
        # v1 may mount cpu and cpuacct together: the same directory under two names.
        return list(dict.fromkeys(self.dirs.values()))


class Cgroups:
    """This worker's parent cgroups, in which each handler process gets one of its own."""

    def __init__(self, parents: dict[str, Path], v2: bool, features: CgroupFeatures) -> None:
        self.parents = parents  # v1 controller (or "" for v2) -> directory
        self.v2 = v2
        self.features = features
        self._count = 0

    @classmethod
    def create(cls, name: str) -> Cgroups | None:
        """Set up the parents, or None when this machine does not let us (then rlimits only)."""
        try:
            return cls._create_v2(name) or cls._create_v1(name)
        except OSError as exc:
            log.warning("cgroups are not usable here (%s)", exc)
            return None

    @classmethod
    def _create_v2(cls, name: str) -> Cgroups | None:
        if not (_ROOT / "cgroup.controllers").exists():
            return None
        own = _own_cgroup("")
        if own is None:
            return None
        parent = _ROOT / own.lstrip("/") / name
        _remove_stale({"": parent.parent}, v2=True)
        offered = set((parent.parent / "cgroup.controllers").read_text().split())
        if not {"memory", "pids"} <= offered:
            return None
        wanted = ["memory", "pids", *(["cpu"] if "cpu" in offered else [])]
        parent.mkdir(exist_ok=True)
        (parent / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in wanted))
        features = CgroupFeatures(freeze=True, cpu_limit="cpu" in offered, cpu_usage=True)
        return cls({"": parent}, v2=True, features=features)

    @classmethod
    def _create_v1(cls, name: str) -> Cgroups | None:
        bases = {
            c: _ROOT / c / own.lstrip("/")
            for c in (*_REQUIRED_V1, *_OPTIONAL_V1)
            if (own := _own_cgroup(c)) is not None and (_ROOT / c / "cgroup.procs").exists()
        }
        _remove_stale(bases, v2=False)
        parents: dict[str, Path] = {}
        for controller in (*_REQUIRED_V1, *_OPTIONAL_V1):
            mount = _ROOT / controller
            own = _own_cgroup(controller)
            if own is None or not (mount / "cgroup.procs").exists():
                if controller in _REQUIRED_V1:
                    return None
                continue
            parent = mount / own.lstrip("/") / name
            try:
                parent.mkdir(exist_ok=True)
            except OSError:
                if controller in _REQUIRED_V1:
                    raise
                continue
            parents[controller] = parent
        features = CgroupFeatures(
            freeze="freezer" in parents, cpu_limit="cpu" in parents, cpu_usage="cpuacct" in parents
        )
        return cls(parents, v2=False, features=features)

    def for_process(self, memory_mb: int) -> ProcessCgroup:
        """A fresh cgroup with the limits set; raises OSError rather than hand out one without
        the limits its level promises."""
        self._count += 1
        leaf = f"p{os.getpid()}-{self._count}"
        dirs: dict[str, Path] = {}
        cgroup = ProcessCgroup(dirs, self.v2)
        try:
            for controller, parent in self.parents.items():
                d = parent / leaf
                if d.exists() and d.resolve() in {p.resolve() for p in dirs.values()}:
                    dirs[controller] = d  # co-mounted with a controller already made
                    continue
                d.mkdir()
                dirs[controller] = d
            self._limit(cgroup, memory_mb)
        except OSError:
            cgroup.remove()
            raise
        return cgroup

    def _limit(self, cgroup: ProcessCgroup, memory_mb: int) -> None:
        memory = str(memory_mb * MIB).encode()
        quota = f"{CPU_PERIOD_US} {CPU_PERIOD_US}".encode()
        if self.v2:
            d = cgroup.dirs[""]
            _write(d / "memory.max", memory)
            with contextlib.suppress(OSError):  # no swap accounting: nothing to cap
                _write(d / "memory.swap.max", b"0")
            _write(d / "pids.max", str(PIDS_MAX).encode())
            if self.features.cpu_limit:
                _write(d / "cpu.max", quota)
            return
        _write(cgroup.dirs["memory"] / "memory.limit_in_bytes", memory)
        with contextlib.suppress(OSError):
            _write(cgroup.dirs["memory"] / "memory.memsw.limit_in_bytes", memory)
        _write(cgroup.dirs["pids"] / "pids.max", str(PIDS_MAX).encode())
        if "cpu" in cgroup.dirs:
            _write(cgroup.dirs["cpu"] / "cpu.cfs_period_us", str(CPU_PERIOD_US).encode())
            _write(cgroup.dirs["cpu"] / "cpu.cfs_quota_us", str(CPU_PERIOD_US).encode())

    def remove(self) -> None:
        """Kill what is left in every process's cgroup, then remove them and the parents."""
        leaves = {leaf.name for parent in self.parents.values() for leaf in parent.glob("p*")}
        for name in leaves:
            dirs = {c: p / name for c, p in self.parents.items() if (p / name).is_dir()}
            cgroup = ProcessCgroup(dirs, self.v2)
            cgroup.kill_all()
            cgroup.remove()
        for parent in self.parents.values():
            with contextlib.suppress(OSError):
                parent.rmdir()


def _remove_stale(bases: dict[str, Path], v2: bool) -> None:
    """Remove the cgroups of workers that died without cleaning up (named ``computebus-...-PID-X``
    by ``run_worker``), with whatever they left running: each process's cgroup is taken across
    every controller at once, so a frozen one is thawed as it is killed."""
    leaves: dict[tuple[str, str], dict[str, Path]] = {}
    parents: list[Path] = []
    for controller, base in bases.items():
        for parent in base.glob("computebus-*"):
            pid = parent.name.rsplit("-", 2)[-2] if parent.name.count("-") >= 2 else ""
            if not pid.isdigit() or _alive(int(pid)):
                continue
            parents.append(parent)
            for leaf in parent.glob("p*"):
                leaves.setdefault((parent.name, leaf.name), {})[controller] = leaf
    for dirs in leaves.values():
        cgroup = ProcessCgroup(dirs, v2)
        cgroup.kill_all()
        cgroup.remove()
    for parent in parents:
        with contextlib.suppress(OSError):
            parent.rmdir()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _own_cgroup(controller: str) -> str | None:
    """This process's cgroup path for ``controller`` ("" for the v2 hierarchy)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, names, path = line.split(":", 2)
            if (controller == "" and names == "") or controller in names.split(","):
                return path
    return None
