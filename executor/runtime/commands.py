"""How each runtime's handler process is started: the argv and its minimal, explicit env."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent
PYTHON_BOOTSTRAP = _HERE / "python_bootstrap.py"
NODE_BOOTSTRAP = _HERE / "node_bootstrap.js"
BOOTSTRAPS = (PYTHON_BOOTSTRAP, NODE_BOOTSTRAP)
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"


def handler_argv(
    runtime: str,
    exe: str,
    bootstraps: str,
    workspace: str,
    handler_file: str,
    export: str,
    memory_mb: int,
) -> list[str]:
    """The argv up to (not including) the two pipe fds the instance appends; every path is as
    the process sees it (inside the sandbox)."""
    if runtime == "python":
        # -S: no site module, so no .pth file of the worker's site-packages runs in the handler.
        bootstrap = f"{bootstraps}/{PYTHON_BOOTSTRAP.name}"
        return [exe, "-I", "-S", "-B", "-u", bootstrap, workspace, handler_file, export]
    bootstrap = f"{bootstraps}/{NODE_BOOTSTRAP.name}"
    return [exe, f"--max-old-space-size={memory_mb}", bootstrap, workspace, handler_file, export]


def base_env(tmp_dir: str) -> dict[str, str]:
    """What every handler process starts with, before the function's own ``env_vars``."""
    return {"PATH": BASE_PATH, "HOME": tmp_dir, "TMPDIR": tmp_dir, "LANG": "C.UTF-8"}
