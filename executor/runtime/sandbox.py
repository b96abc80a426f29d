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

import ctypes
import logging
import os
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from executor.runtime.cgroups import PIDS_MAX, Cgroups, ProcessCgroup
from executor.runtime.commands import BOOTSTRAPS
from executor.runtime.confinement import Confinement
from executor.runtime.interpreters import Interpreter
from executor.runtime.sandbox_users import SandboxUsers
from executor.runtime.syscall_filter import compile_filter
from executor.settings import ISOLATION_LEVELS
from schemas.errors import SetupError

log = logging.getLogger("computebus.sandbox")

LEVELS = ISOLATION_LEVELS[1:]  # strongest first
MIB = 1024 * 1024
WORKSPACE_INSIDE = "/workspace"
BOOTSTRAPS_INSIDE = "/opt/computebus"
INTERPRETERS_INSIDE = {"python": "/opt/python", "nodejs": "/opt/node"}
# The function's env_vars inside the sandbox, and the variable that tells the bootstrap where.
ENVIRONMENT_INSIDE = "/opt/environment"
ENVIRONMENT_VARIABLE = "COMPUTEBUS_ENVIRONMENT"
UNPRIVILEGED_ID = "65534"  # nobody, as the handler sees itself under bubblewrap
TMP_BYTES = 64 * MIB
FSIZE_BYTES = 64 * MIB
NOFILE = 1024
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
# Kernel interfaces under /proc: read-only (as Docker's readonlyPaths), or masked with /dev/null.
_PROC_READ_ONLY = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs")
_PROC_MASKED = ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug")
# Last: /dev stays usable (/dev/null, /dev/urandom) but nothing can be created there (/dev/shm),
# and nothing anywhere.
_SEAL = ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", WORKSPACE_INSIDE]
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2


class SandboxUnusable(SetupError):
    """The worker's sandbox cannot run handlers here (raised at start-up, naming the fix)."""


class RuntimeMissing(SetupError):
    """A function's runtime is not installed on this worker."""


@dataclass(frozen=True)
class Limits:
    """What one handler process may use: memory, a writable workspace or not, the network."""

    memory_mb: int
    read_only_fs: bool = True
    network: bool = False


@dataclass(frozen=True)
class LaunchPlan:
    """How to start one revision's handler processes (the same for each of them)."""

    command: list[str]  # the interpreter's argv, as seen where it runs
    bwrap_args: list[str] | None  # bubblewrap's options up to the per-process ones (a memfd)
    env: dict[
        str, str
    ]  # of the process started (under bubblewrap, the handler's is in its options)
    cwd: str
    limits: Limits
    python: bool
    function_env: bytes  # under bubblewrap: the function's env_vars, for the bootstrap to set


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
        self.bootstraps = _stage_bootstraps()

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
            bwrap = _working_bwrap(users.switches)
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
        env_vars: list[str],
        limits: Limits,
    ) -> LaunchPlan:
        """``command(interpreter, bootstraps, workspace)`` builds the argv from the paths as the
        process sees them; ``env`` is the runtime's environment, ``env_vars`` the function's.
        Raises ``RuntimeMissing`` when the runtime is not installed."""
        interp = self.interpreters.get(runtime)
        if interp is None:
            raise RuntimeMissing(f"runtime {runtime} is not installed on this worker")
        python = runtime == "python"
        if self.bwrap is None:
            argv = command(str(interp.executable), str(self.bootstraps), str(workspace))
            everything = {**env, **dict(item.split("=", 1) for item in env_vars)}
            return LaunchPlan(argv, None, everything, str(workspace), limits, python, b"")
        args = self._namespaces(limits)
        # bubblewrap (root on the host) and setpriv (root until it drops to the uid) never see
        # the function's env_vars: the bootstrap reads them from a file only the sandbox has
        # and sets them before it loads the handler. Options travel in a memfd, not on the
        # command line, which anyone can read through ps.
        args.append("--clearenv")
        for name, value in {**env, ENVIRONMENT_VARIABLE: ENVIRONMENT_INSIDE}.items():
            args += ["--setenv", name, value]
        # Directories bwrap makes on the way to a mount point are 0700 when it runs as root.
        for parent in ("/etc", "/opt"):
            args += ["--perms", "0755", "--dir", parent]
        for path in _SYSTEM_PATHS:
            args += _bind_as_is(path)
        if limits.network:
            for path in _NETWORK_PATHS:
                args += _bind_as_is(path)
        exe = str(interp.executable)
        if not interp.in_system_dirs:
            inside = INTERPRETERS_INSIDE[runtime]
            args += ["--ro-bind", str(interp.prefix), inside]
            exe = inside + "/" + str(interp.executable.relative_to(interp.prefix))
            if python:  # a relocated build still finds its libpython
                args += ["--setenv", "LD_LIBRARY_PATH", inside + "/lib"]
        args += ["--ro-bind", str(self.bootstraps), BOOTSTRAPS_INSIDE]
        args += ["--ro-bind", str(workspace), WORKSPACE_INSIDE, "--proc", "/proc", "--dev", "/dev"]
        for path in _PROC_READ_ONLY:
            args += ["--ro-bind-try", path, path]
        for path in _PROC_MASKED:
            if os.path.exists(path):
                args += ["--ro-bind", "/dev/null", path]
        if not limits.read_only_fs:
            args += ["--size", str(TMP_BYTES), "--perms", "1777", "--tmpfs", "/tmp"]
        argv = command(exe, BOOTSTRAPS_INSIDE, WORKSPACE_INSIDE)
        function_env = b"".join(item.encode() + b"\0" for item in env_vars)
        return LaunchPlan(argv, args, {}, str(workspace), limits, python, function_env)

    def _namespaces(self, limits: Limits) -> list[str]:
        args = ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        if not limits.network:
            args.append("--unshare-net")
        args += ["--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        if self.users.switches:
            # Root, no user namespace: setpriv needs these to drop to the sandbox's uid.
            for cap in ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"):
                args += ["--cap-add", cap]
            return args
        return [
            "--unshare-user",
            "--disable-userns",  # no nested user namespace: it would grant mount rights inside
            "--uid",
            UNPRIVILEGED_ID,
            "--gid",
            UNPRIVILEGED_ID,
            *args,
        ]

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
        preexec = self._preexec(plan, confinement.cgroup, uid)
        if plan.bwrap_args is None or self.bwrap is None:
            return Spawn(plan.command, (), preexec)
        args = list(plan.bwrap_args)
        fds: list[int] = []
        try:
            if self.seccomp is not None:
                fds.append(_fd_holding(self.seccomp))
                args += ["--seccomp", str(fds[-1])]
            fds.append(_fd_holding(plan.function_env))
            args += ["--perms", "0444", "--ro-bind-data", str(fds[-1]), ENVIRONMENT_INSIDE]
            args += _SEAL
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

    def _preexec(
        self, plan: LaunchPlan, cgroup: ProcessCgroup | None, uid: int
    ) -> Callable[[], None]:
        """What the child does between fork and exec: enter its cgroup, set its rlimits, and
        where no bubblewrap does it, drop to its uid and load the seccomp filter."""
        rlimits = [
            (resource.RLIMIT_CORE, 0),
            (resource.RLIMIT_NOFILE, NOFILE),
            (resource.RLIMIT_FSIZE, FSIZE_BYTES),
        ]
        if self.users.switches:  # the uid is the sandbox's alone: this bounds its processes
            rlimits.append((resource.RLIMIT_NPROC, PIDS_MAX))
        if cgroup is None and plan.python:
            # Without a memory cgroup, bound Python by address space (Node's V8 reserves far more
            # address space than it uses; it is bounded by --max-old-space-size instead).
            rlimits.append((resource.RLIMIT_AS, (plan.limits.memory_mb + 64) * MIB))
        drop = self.bwrap is None and self.users.switches
        program = _sock_fprog(self.seccomp) if self.bwrap is None and self.seccomp else None
        libc = ctypes.CDLL(None, use_errno=True)

        def run() -> None:
            if cgroup is not None:
                cgroup.enter()
            for which, value in rlimits:
                resource.setrlimit(which, (value, value))
            if drop:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
            if self.bwrap is None:
                if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                    raise OSError(ctypes.get_errno(), "no_new_privs")
                if program is not None and (
                    libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(program)) != 0
                ):
                    raise OSError(ctypes.get_errno(), "seccomp")

        return run

    def close(self) -> None:
        if self.cgroups is not None:
            self.cgroups.remove()
        shutil.rmtree(self.bootstraps, ignore_errors=True)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def _sock_fprog(program: bytes) -> _SockFprog:
    return _SockFprog(len(program) // 8, program)  # each BPF instruction is 8 bytes


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


_STAGED_PREFIX = "computebus-bootstraps-"


def _stage_bootstraps() -> Path:
    """A copy of the bootstraps that every sandbox uid can read (the installed package may live
    where only root can look, as under /root). Named by the worker's pid, so that the next
    worker removes what one that was killed outright left behind."""
    _remove_stale_stages()
    staged = Path(tempfile.mkdtemp(prefix=f"{_STAGED_PREFIX}{os.getpid()}-"))
    for source in BOOTSTRAPS:
        target = staged / source.name
        shutil.copyfile(source, target)
        target.chmod(0o444)
    staged.chmod(0o755)
    return staged


def _remove_stale_stages() -> None:
    for path in Path(tempfile.gettempdir()).glob(f"{_STAGED_PREFIX}*-*"):
        pid = path.name[len(_STAGED_PREFIX) :].split("-", 1)[0]
        try:
            if path.lstat().st_uid != os.geteuid() or not pid.isdigit():
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


def _bind_as_is(path: str) -> list[str]:
    """Bind ``path`` read-only at the same place; a symlink (``/lib -> usr/lib``) stays one."""
    p = Path(path)
    if p.is_symlink():
        return ["--symlink", os.readlink(p), path]
    if p.exists():
        return ["--ro-bind", path, path]
    return []


def _working_bwrap(as_root: bool) -> str | None:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None
    probe = [bwrap, "--unshare-pid", "--unshare-net", "--die-with-parent", "--cap-drop", "ALL"]
    if not as_root:
        probe += ["--unshare-user", "--uid", UNPRIVILEGED_ID, "--gid", UNPRIVILEGED_ID]
    for path in _SYSTEM_PATHS:
        probe += _bind_as_is(path)
    probe += ["--proc", "/proc", "--dev", "/dev", "--", "/bin/sh", "-c", "exit 0"]
    try:
        done = subprocess.run(probe, capture_output=True, timeout=10, check=False, env={})
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("bwrap does not start here: %s", exc)
        return None
    if done.returncode != 0:
        log.warning("bwrap does not work here: %s", done.stderr.decode(errors="replace").strip())
        return None
    return bwrap
