"""A handler name (``index.handler``) as a file and an export, and whether the bundle has it."""

from __future__ import annotations

import keyword
import os
from pathlib import Path

from executor.bundle.rules import (
    _EXTENSIONS,
    _JS_IDENTIFIER,
    HANDLER_PATH,
    RUNTIME_PATH,
    _invalid,
    _name_problem,
)


def _is_identifier(name: str, runtime: str) -> bool:
    if runtime == "python":
        return name.isidentifier() and not keyword.iskeyword(name)
    return _JS_IDENTIFIER.fullmatch(name) is not None


def handler_file(handler: str, runtime: str) -> tuple[str, str]:
    """Split ``<path>.<export>`` into the handler's file (bundle-relative) and export name."""
    extension = _EXTENSIONS.get(runtime)
    if extension is None:
        raise _invalid(RUNTIME_PATH, f"unknown runtime {runtime!r}")
    module, dot, export = handler.rpartition(".")
    if not dot or not module or not export:
        raise _invalid(HANDLER_PATH, f"{handler!r} is not <file>.<export>, e.g. index.handler")
    if not _is_identifier(export, runtime):
        raise _invalid(HANDLER_PATH, f"export {export!r} is not an identifier")
    stem, dot, written_extension = module.rpartition(".")
    if dot and f".{written_extension}" in (*_EXTENSIONS.values(), ".mjs", ".cjs"):
        raise _invalid(
            HANDLER_PATH,
            f"{handler!r}: write the file without its extension, {stem}.{export} "
            f"(the {runtime} runtime adds {extension})",
        )
    path = module + extension
    problem = _name_problem(path)
    if problem:
        raise _invalid(HANDLER_PATH, f"handler file {path!r} {problem}")
    return path, export


def check_handler_present(workspace: Path, handler: str, runtime: str) -> None:
    """Fail unless the handler's file is a regular file in the workspace (links inside count)."""
    path, _export = handler_file(handler, runtime)
    root = os.path.realpath(workspace)
    real = os.path.realpath(workspace / path)
    if not (real.startswith(root + os.sep) and os.path.isfile(real)):
        hint = ""
        for other, other_extension in _EXTENSIONS.items():
            twin = path.removesuffix(_EXTENSIONS[runtime]) + other_extension
            if other != runtime and (workspace / twin).is_file():
                hint = f" (the bundle has {twin}: is the runtime {other}?)"
        raise _invalid(HANDLER_PATH, f"handler file {path} is not in the bundle{hint}")
