"""Which interpreter runs each runtime's handlers, found once when a worker starts.

Python handlers run the interpreter ``COMPUTEBUS_PYTHON`` names, else the one behind the
worker's own (the base interpreter of its virtualenv: a handler never sees the worker's
packages). Node handlers run ``COMPUTEBUS_NODE``, else ``node`` on PATH. Under bubblewrap an
interpreter outside the system directories is mounted read-only at a neutral place
(``/opt/python``, ``/opt/node``) with the tree it lives in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from schemas.errors import SetupError
from schemas.functions import RUNTIMES

SYSTEM_PREFIXES = ("/usr", "/bin", "/lib")
_PYTHON_FACTS = "import sys; print(sys.prefix); print('.'.join(map(str, sys.version_info[:3])))"
_MIN_PYTHON = (3, 9)


class InterpreterError(SetupError):
    """A configured interpreter is missing or unusable (raised at start-up)."""


@dataclass(frozen=True)
class Interpreter:
    """An interpreter handlers of one runtime run, as found at start-up."""

    runtime: str
    executable: Path  # resolved: no symlinks, no virtualenv
    prefix: Path  # the tree it needs at run time
    version: str

    @property
    def in_system_dirs(self) -> bool:
        return _under(self.prefix, SYSTEM_PREFIXES) and _under(self.executable, SYSTEM_PREFIXES)


def find_interpreters(python: str | None, node: str | None) -> dict[str, Interpreter]:
    """The installed runtimes' interpreters; a configured one that does not work raises."""
    found: dict[str, Interpreter] = {}
    py = _python(Path(python) if python else _base_python(), configured=python is not None)
    if py is not None:
        found["python"] = py
    exe = node or shutil.which("node")
    if exe is not None:
        found["nodejs"] = _node(Path(exe), configured=node is not None)
    return {name: found[name] for name in RUNTIMES if name in found}


def _base_python() -> Path:
    """The interpreter behind this one: a virtualenv's ``bin/python`` is only a link to it."""
    return Path(getattr(sys, "_base_executable", None) or sys.executable)


def _python(path: Path, *, configured: bool) -> Interpreter | None:
    exe = path.resolve()
    try:
        out = subprocess.run(
            [str(exe), "-I", "-S", "-c", _PYTHON_FACTS],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
            env={"PATH": os.defpath},
        ).stdout.split()
        prefix, version = Path(out[0]), out[1]
    except (OSError, subprocess.SubprocessError, IndexError) as exc:
        if configured:
            raise InterpreterError(f"COMPUTEBUS_PYTHON={path}: does not run ({exc})") from None
        return None
    if tuple(int(p) for p in version.split(".")[:2]) < _MIN_PYTHON:
        raise InterpreterError(f"COMPUTEBUS_PYTHON={path}: Python {version} is older than 3.9")
    return Interpreter("python", exe, prefix.resolve(), version)


def _node(path: Path, *, configured: bool) -> Interpreter:
    exe = path.resolve()
    try:
        out = subprocess.run(
            [str(exe), "--version"], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        name = "COMPUTEBUS_NODE" if configured else "node on PATH"
        raise InterpreterError(f"{name} ({path}) does not run: {exc}") from None
    return Interpreter("nodejs", exe, exe.parent.parent, out.stdout.strip().lstrip("v"))


def _under(path: Path, roots: tuple[str, ...]) -> bool:
    text = str(path)
    return any(text == r or text.startswith(r + "/") for r in roots)
