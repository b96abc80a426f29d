"""Where a worker unpacks bundles: under the data dir, unless a root worker's sandbox uids could
not reach them there (a data dir under ``/root``, say, with no bubblewrap to bind it): then in
a directory of this run's own in the temp dir (made by root with a name no one can guess, so no
one can make it first; others may enter it but not list it)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def workspace_root(data_dir: Path, *, bound: bool) -> Path:
    """``bound``: the sandbox binds the workspace into view (bubblewrap), so any path does."""
    data_dir = data_dir.resolve()
    preferred = data_dir / "workspaces"
    if bound or os.geteuid() != 0 or _others_can_enter(data_dir):
        preferred.mkdir(parents=True, exist_ok=True)
        return preferred
    fallback = Path(tempfile.mkdtemp(prefix="computebus-workspaces-"))
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
