"""Host uids for handler processes: never the worker's root.

A worker running as root gives each handler process a uid of its own from a range, held for the
process's life by a lock file (as systemd's DynamicUser does), so no two live sandboxes on the
machine share a uid, whichever worker started them: no shared kernel keyring, per-user limits or
signals between tenants. A worker that is not root has only its own uid to give; its sandboxes
share it (bubblewrap maps it to 65534 inside).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from schemas.errors import ComputebusError

DEFAULT_RANGE = (1_500_000_000, 1_500_065_535)


class NoSandboxUser(ComputebusError):
    """Every uid of the range is taken."""


@dataclass
class UidLease:
    """One host uid held for one handler process (a flock'd file), released when it ends."""

    uid: int
    _lock_fd: int | None = None

    def release(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None


class SandboxUsers:
    """The host uids a root worker hands its handler processes, one each."""

    def __init__(self, first: int, last: int, lock_dir: Path | None) -> None:
        self.first = first
        self.last = last
        self._lock_dir = lock_dir

    @classmethod
    def for_this_process(cls, uid_range: tuple[int, int] = DEFAULT_RANGE) -> SandboxUsers:
        if os.geteuid() != 0:
            return cls.own()
        return cls(*uid_range, _lock_dir())

    @classmethod
    def own(cls) -> SandboxUsers:
        """No switching: processes keep the worker's uid (a bare baseline, or a non-root worker)."""
        uid = os.getuid()
        return cls(uid, uid, None)

    @property
    def switches(self) -> bool:
        """Does a handler process run under another uid than the worker's?"""
        return self._lock_dir is not None

    def lease(self) -> UidLease:
        """A uid no other live sandbox on this machine has (the worker's own when not root)."""
        if self._lock_dir is None:
            return UidLease(self.first)
        for uid in range(self.first, self.last + 1):
            fd = os.open(self._lock_dir / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return UidLease(uid, fd)
        raise NoSandboxUser(f"all sandbox uids {self.first}-{self.last} are in use")


def _lock_dir() -> Path:
    """A root-only directory shared by every worker on the machine."""
    for base in (Path("/run"), Path(tempfile.gettempdir())):
        path = base / "computebus-sandbox-uids"
        with contextlib.suppress(OSError):
            path.mkdir(mode=0o700, exist_ok=True)
            info = path.lstat()
            if info.st_uid == 0 and (info.st_mode & 0o077) == 0 and path.is_dir():
                return path
    raise OSError("no root-only directory for sandbox uid locks (/run or the temp dir)")
