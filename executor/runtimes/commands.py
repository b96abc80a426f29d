"""How each runtime's handler process is started: the argv and its minimal, explicit env."""

from __future__ import annotations

import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

from schemas.functions import RUNTIMES

_HERE = Path(__file__).resolve().parent
PYTHON_BOOTSTRAP = _HERE / "python_bootstrap.py"
NODE_BOOTSTRAP = _HERE / "node_bootstrap.js"
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"

# Variables a function may not set: they would change how the runtime itself loads.
RESERVED_ENV_PREFIXES = ("LD_", "PYTHON", "NODE_", "COMPUTEBUS_", "NATS_")
RESERVED_ENV_NAMES = frozenset({"PATH", "HOME", "PWD", "TMPDIR"})


def interpreter(runtime: str) -> str | None:
    if runtime == "python":
        return sys.executable
    return shutil.which("node")


@cache
def runtime_version(runtime: str) -> str | None:
    exe = interpreter(runtime)
    if exe is None:
        return None
    if runtime == "python":
        return ".".join(map(str, sys.version_info[:3]))
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().lstrip("v") or None


def available_runtimes() -> dict[str, str | None]:
    return {name: runtime_version(name) for name in RUNTIMES}


def bootstrap_for(runtime: str) -> Path:
    return PYTHON_BOOTSTRAP if runtime == "python" else NODE_BOOTSTRAP


def handler_argv(
    runtime: str, bootstrap: str, workspace: str, handler_file: str, export: str, memory_mb: int
) -> list[str]:
    """The argv up to (not including) the two pipe fds the instance appends; ``bootstrap`` and
    ``workspace`` are paths as the process sees them (inside the sandbox)."""
    exe = interpreter(runtime)
    if exe is None:
        raise RuntimeError(f"runtime {runtime} is not installed on this worker")
    if runtime == "python":
        # -S: no site module, so no .pth file of the worker's site-packages runs in the handler.
        return [exe, "-I", "-S", "-B", "-u", bootstrap, workspace, handler_file, export]
    return [exe, f"--max-old-space-size={memory_mb}", bootstrap, workspace, handler_file, export]


def handler_env(env_vars: list[str], tmp_dir: str) -> dict[str, str]:
    env = dict(item.split("=", 1) for item in env_vars)
    env.update({"PATH": BASE_PATH, "HOME": tmp_dir, "TMPDIR": tmp_dir, "LANG": "C.UTF-8"})
    return env
