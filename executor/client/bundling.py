"""What ``computebus deploy`` uploads: the folder's files minus what is ignored, with the
function's dependencies installed beside them (as ``sam build`` and ``faas-cli build`` do).

``.computebusignore`` (gitignore syntax) adds to the defaults, which keep secrets, version
control and caches out of bundles; a ``!pattern`` there brings a default back.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pathspec

from executor.client.api import ClientError

IGNORE_FILE = ".computebusignore"
DEFAULT_IGNORES = (
    ".git/",
    ".hg/",
    ".svn/",
    ".env",
    ".env.*",
    "*.pem",
    "*.key",
    "id_rsa*",
    ".npmrc",
    ".pypirc",
    ".netrc",
    "__pycache__/",
    "*.pyc",
    ".venv/",
    "venv/",
    ".mypy_cache/",
    ".pytest_cache/",
    ".ruff_cache/",
    "node_modules/.cache/",
    ".computebus/",
    ".DS_Store",
    IGNORE_FILE,
)
_INSTALL_TIMEOUT_S = 600


def ignore_spec(folder: Path) -> pathspec.GitIgnoreSpec:
    lines = list(DEFAULT_IGNORES)
    own = folder / IGNORE_FILE
    if own.is_file():
        lines += own.read_text().splitlines()
    return pathspec.GitIgnoreSpec.from_lines(lines)


def files_to_ship(folder: Path, spec: pathspec.GitIgnoreSpec | None = None) -> Iterator[Path]:
    """Every file and symlink under ``folder`` that is not ignored (by ``spec``, else by the
    folder's own rules), in a stable order."""
    spec = spec or ignore_spec(folder)
    for root, dirs, files in os.walk(folder):
        base = Path(root)
        rel_root = base.relative_to(folder)
        dirs[:] = sorted(d for d in dirs if not spec.match_file(f"{(rel_root / d).as_posix()}/"))
        for name in sorted(files + [d for d in dirs if (base / d).is_symlink()]):
            rel = (rel_root / name).as_posix()
            if not spec.match_file(rel):
                yield base / name


def pack(folder: Path, rules_from: Path | None = None) -> list[dict[str, Any]]:
    """The shipped files as base64 assets; symlinks become ``link`` assets. ``rules_from``: the
    folder whose ignore rules apply (the original, when ``folder`` is its staged copy)."""
    assets = []
    for path in files_to_ship(folder, ignore_spec(rules_from or folder)):
        name = path.relative_to(folder).as_posix()
        if path.is_symlink():
            value, link = os.readlink(path).encode(), True
        else:
            value, link = path.read_bytes(), False
        assets.append(
            {
                "asset_name": name,
                "asset_type": "file",
                "link": link,
                "asset_value": base64.b64encode(value).decode(),
            }
        )
    return assets


@contextmanager
def built(folder: Path, runtime: str) -> Iterator[Path]:
    """``folder`` as it ships: a copy with ``requirements.txt`` (python) or ``package.json``
    (nodejs) installed into it, or ``folder`` itself when there is nothing to install."""
    requirements = folder / "requirements.txt"
    package = folder / "package.json"
    if not (runtime == "python" and requirements.is_file()) and not (
        runtime == "nodejs" and package.is_file()
    ):
        yield folder
        return
    with _staging_dir(folder) as stage:
        for path in files_to_ship(folder):
            target = stage / path.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink():
                target.symlink_to(os.readlink(path))
            else:
                shutil.copy2(path, target)
        if runtime == "python":
            pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            _install(
                [*pip, "--target", str(stage), "-r", str(stage / "requirements.txt")],
                stage,
                "pip install -r requirements.txt",
            )
        else:
            npm = shutil.which("npm")
            if npm is None:
                raise ClientError("package.json needs npm to install its dependencies; not found")
            verb = "ci" if (stage / "package-lock.json").is_file() else "install"
            _install(
                [npm, verb, "--omit=dev", "--no-audit", "--no-fund", "--install-links"],
                stage,
                f"npm {verb} --omit=dev",
            )
        yield stage


@contextmanager
def _staging_dir(folder: Path) -> Iterator[Path]:
    """A scratch copy's home beside ``folder``, so relative paths in the dependency files
    (``file:../lib``, ``./wheels/x.whl``) mean what they mean there; else in the temp dir."""
    try:
        tmp = tempfile.mkdtemp(
            prefix=f".{folder.resolve().name}.computebus-build-", dir=folder.resolve().parent
        )
    except OSError:
        tmp = tempfile.mkdtemp(prefix="computebus-build-")
    try:
        yield Path(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _install(argv: list[str], cwd: Path, what: str) -> None:
    try:
        done = subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, timeout=_INSTALL_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise ClientError(f"{what} took longer than {_INSTALL_TIMEOUT_S} s") from None
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise ClientError(f"{what} failed (exit {done.returncode}):\n{tail}")
