"""What bubblewrap is told: the namespaces, the paths a handler sees (read-only system dirs,
its interpreter, the bootstraps, its workspace, a masked /proc), and whether bwrap works on this
machine at all."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from executor.runtime.interpreters import Interpreter
from executor.runtime.limits import Limits

log = logging.getLogger("computebus.sandbox")

WORKSPACE_INSIDE = "/workspace"
BOOTSTRAPS_INSIDE = "/opt/computebus"
INTERPRETERS_INSIDE = {"python": "/opt/python", "nodejs": "/opt/node"}
UNPRIVILEGED_ID = "65534"  # nobody, as the handler sees itself under bubblewrap
TMP_BYTES = 64 * 1024 * 1024
# Runtime paths that exist on most systems; only the ones present are bound (read-only).
SYSTEM_PATHS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc/alternatives")
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
SEAL = ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", WORKSPACE_INSIDE]


def namespace_args(*, network: bool, root: bool) -> list[str]:
    """The namespaces and capabilities: a root worker keeps what setpriv needs to drop to the
    sandbox's uid; any other runs bwrap in a user namespace as uid 65534."""
    args = ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if not network:
        args.append("--unshare-net")
    args += ["--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    if root:
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


def sandbox_view(
    args: list[str],
    runtime: str,
    interp: Interpreter,
    bootstraps: Path,
    workspace: Path,
    env: dict[str, str],
    limits: Limits,
) -> tuple[list[str], str]:
    """``args`` plus what the handler sees: its environment, the read-only system paths, the
    interpreter, the bootstraps and the workspace, a masked /proc; and the interpreter's path
    as seen inside."""
    python = runtime == "python"
    # Options travel in a memfd, not on the command line, which anyone can read through ps.
    # The function's env_vars are not here at all: they reach the bootstrap in its first frame.
    args.append("--clearenv")
    for name, value in env.items():
        args += ["--setenv", name, value]
    # Directories bwrap makes on the way to a mount point are 0700 when it runs as root.
    for parent in ("/etc", "/opt"):
        args += ["--perms", "0755", "--dir", parent]
    for path in SYSTEM_PATHS:
        args += bind_as_is(path)
    if limits.network:
        for path in _NETWORK_PATHS:
            args += bind_as_is(path)
    exe = str(interp.executable)
    if not interp.in_system_dirs:
        inside = INTERPRETERS_INSIDE[runtime]
        args += ["--ro-bind", str(interp.prefix), inside]
        exe = inside + "/" + str(interp.executable.relative_to(interp.prefix))
        if python:  # a relocated build still finds its libpython
            args += ["--setenv", "LD_LIBRARY_PATH", inside + "/lib"]
    args += ["--ro-bind", str(bootstraps), BOOTSTRAPS_INSIDE]
    args += ["--ro-bind", str(workspace), WORKSPACE_INSIDE, "--proc", "/proc", "--dev", "/dev"]
    for path in _PROC_READ_ONLY:
        args += ["--ro-bind-try", path, path]
    for path in _PROC_MASKED:
        if os.path.exists(path):
            args += ["--ro-bind", "/dev/null", path]
    if not limits.read_only_fs:
        args += ["--size", str(TMP_BYTES), "--perms", "1777", "--tmpfs", "/tmp"]
    return args, exe


def bind_as_is(path: str) -> list[str]:
    """Bind ``path`` read-only at the same place; a symlink (``/lib -> usr/lib``) stays one."""
    p = Path(path)
    if p.is_symlink():
        return ["--symlink", os.readlink(p), path]
    if p.exists():
        return ["--ro-bind", path, path]
    return []


def working_bwrap(as_root: bool) -> str | None:
    """bwrap's path if it starts a sandbox here (as root, or in a user namespace), else None."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None
    probe = [bwrap, "--unshare-pid", "--unshare-net", "--die-with-parent", "--cap-drop", "ALL"]
    if not as_root:
        probe += ["--unshare-user", "--uid", UNPRIVILEGED_ID, "--gid", UNPRIVILEGED_ID]
    for path in SYSTEM_PATHS:
        probe += bind_as_is(path)
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
