"""How each runtime's handler process is started: the argv and its minimal, explicit env."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

_HERE = Path(__file__).resolve().parent
PYTHON_BOOTSTRAP = _HERE / "python_bootstrap.py"
NODE_BOOTSTRAP = _HERE / "node_bootstrap.js"
BOOTSTRAPS = (PYTHON_BOOTSTRAP, NODE_BOOTSTRAP)
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"


def handler_argv(runtime: str, exe: str, bootstraps: str, memory_mb: int) -> list[str]:
    """The argv up to (not including) the two pipe fds the instance appends; every path is as
    the process sees it (inside the sandbox). Nothing of a revision: that comes in the first
    frame (``schemas.handler_protocol.Assignment``)."""
    if runtime == "python":
        # -S: no site module, so no .pth file of the worker's site-packages runs in the handler.
        return [exe, "-I", "-S", "-B", "-u", f"{bootstraps}/{PYTHON_BOOTSTRAP.name}"]
    bootstrap = f"{bootstraps}/{NODE_BOOTSTRAP.name}"
    return [exe, f"--max-old-space-size={memory_mb}", bootstrap]


def base_env(tmp_dir: str) -> dict[str, str]:
    """What every handler process starts with, before the function's own ``env_vars``."""
    return {"PATH": BASE_PATH, "HOME": tmp_dir, "TMPDIR": tmp_dir, "LANG": "C.UTF-8"}


_STAGED_PREFIX = "computebus-bootstraps-"


def stage_bootstraps() -> Path:
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
