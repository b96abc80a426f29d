"""What a handler's process does between fork and exec: enter its cgroup, set its rlimits, and
where no bubblewrap does it, drop to its uid and load the seccomp filter.

Everything is computed before the fork; the function that runs in the child only makes calls.
"""

from __future__ import annotations

import ctypes
import os
import resource
from collections.abc import Callable

from executor.runtime.cgroups import PIDS_MAX, ProcessCgroup

MIB = 1024 * 1024
FSIZE_BYTES = 64 * MIB
NOFILE = 1024
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def child_setup(
    *,
    cgroup: ProcessCgroup | None,
    uid: int | None,
    own_uid: bool,
    memory_mb: int | None,
    seccomp: bytes | None,
    no_new_privs: bool,
) -> Callable[[], None]:
    """``uid``: drop to it (no bubblewrap to do it); ``own_uid``: the process's uid is its
    sandbox's alone, so RLIMIT_NPROC bounds its processes; ``memory_mb``: a Python handler,
    bounded by address space where no memory cgroup is; ``seccomp``: the filter to load here."""
    rlimits = [
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_NOFILE, NOFILE),
        (resource.RLIMIT_FSIZE, FSIZE_BYTES),
    ]
    if own_uid:
        rlimits.append((resource.RLIMIT_NPROC, PIDS_MAX))
    if cgroup is None and memory_mb is not None:
        # Node's V8 reserves far more address space than it uses; it is bounded by
        # --max-old-space-size instead.
        rlimits.append((resource.RLIMIT_AS, (memory_mb + 64) * MIB))
    program = _SockFprog(len(seccomp) // 8, seccomp) if seccomp else None  # 8 bytes per BPF op
    libc = ctypes.CDLL(None, use_errno=True)

    def run() -> None:
        if cgroup is not None:
            cgroup.enter()
        for which, value in rlimits:
            resource.setrlimit(which, (value, value))
        if uid is not None:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        if no_new_privs:
            if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "no_new_privs")
            if program is not None and (
                libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(program)) != 0
            ):
                raise OSError(ctypes.get_errno(), "seccomp")

    return run
