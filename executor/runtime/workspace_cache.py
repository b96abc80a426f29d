"""``WorkspaceCache``: one materialised, read-only copy per bundle digest on a worker."""

from __future__ import annotations

import errno
import os
import re
import secrets
import tempfile
from pathlib import Path

from executor.bundle.unpack import materialize, remove_tree
from schemas.bundles import Bundle

_DIGEST = re.compile(r"[0-9a-f]{64}")


class WorkspaceCache:
    """One read-only materialised workspace per bundle digest, under ``root``.

    Safe to share between processes: a workspace appears under its digest only once complete,
    by an atomic rename of a private temporary directory.
    """

    def __init__(self, root: Path, *, max_total_bytes: int) -> None:
        self.root = root
        self.max_total_bytes = max_total_bytes
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, digest: str) -> Path:
        if not _DIGEST.fullmatch(digest):
            raise ValueError(f"not a sha256 hex digest: {digest!r}")
        return self.root / digest

    def path_for(self, digest: str) -> Path | None:
        path = self._path(digest)
        return path if path.is_dir() and not path.is_symlink() else None

    def install(self, digest: str, bundle: Bundle) -> Path:
        final = self._path(digest)
        if self.path_for(digest) is not None:
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f"{digest}.tmp-", dir=self.root))
        try:
            materialize(bundle, tmp, max_total_bytes=self.max_total_bytes)
            try:
                os.rename(tmp, final)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                remove_tree(tmp)  # another process installed the same digest first
        except BaseException:
            remove_tree(tmp)
            raise
        return final

    def remove(self, digest: str) -> None:
        path = self._path(digest)
        doomed = self.root / f"{digest}.rm-{secrets.token_hex(8)}"
        try:
            # Renaming first makes the workspace disappear at once for path_for.
            os.rename(path, doomed)
        except FileNotFoundError:
            return
        remove_tree(doomed)
