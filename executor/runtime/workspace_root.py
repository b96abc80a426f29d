"""Where a worker unpacks bundles: under the data dir, unless a root worker's sandbox uids could
not reach them there (a data dir under ``/root``, say, with no bubblewrap to bind it): then in
the temp dir, in a directory of root's that others may enter but not list."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from pathlib import Path

from executor.runtime.sandbox import SandboxUnusable


def workspace_root(data_dir: Path, *, bound: bool) -> Path:
    """``bound``: the sandbox binds the workspace into view (bubblewrap), so any path does."""
    data_dir = data_dir.resolve()
    preferred = data_dir / "workspaces"
    if bound or os.geteuid() != 0 or _others_can_enter(data_dir):
        preferred.mkdir(parents=True, exist_ok=True)
        return preferred
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    fallback = Path(tempfile.gettempdir()) / f"computebus-workspaces-{digest}"
    with contextlib.suppress(FileExistsError):
        fallback.mkdir(mode=0o711)
    info = os.lstat(fallback)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0:
        raise SandboxUnusable(
            f"{fallback} exists and is not root's own directory: remove it, or use a data dir "
            "every user can enter (--data-dir, e.g. /var/lib/computebus)"
        )
    os.chmod(fallback, 0o711)
    return fallback


def _others_can_enter(path: Path) -> bool:
    """Whether a user other than the owner may traverse every directory down to ``path``."""
    for directory in (path, *path.parents):
        try:
            mode = os.stat(directory).st_mode
        except FileNotFoundError:
            continue  # made below, with the default (enterable) mode
        if not mode & stat.S_IXOTH:
            return False
    return True
