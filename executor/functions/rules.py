"""The rules of a function's fields that no schema states: memory tiers, env_vars, names; and
the 400 for a revision no worker could load."""

from __future__ import annotations

import re

from schemas.control import RUNTIME_UNAVAILABLE, Blocker
from schemas.errors import (
    FunctionFailed,
    HandlerNotFound,
    InvalidRequest,
    Timeout,
    detail,
)
from schemas.functions import (
    RESERVED_ENV_NAMES,
    RESERVED_ENV_PREFIXES,
)

MEMORY_TIERS_MB = (128, 256, 512, 1024, 2048, 4096)
_SIZE = re.compile(r"^([1-9][0-9]*)MB$")
# Far below what exec accepts (128 KiB per string, the argv and environment together a quarter
# of the stack limit), so every handler process can start with them.
MAX_ENV_VAR_BYTES = 32 * 1024
MAX_ENV_BYTES = 128 * 1024
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
MAX_NAME_CHARS = 256


def memory_mb(size: str) -> int:
    found = _SIZE.fullmatch(size)
    if not found or int(found.group(1)) not in MEMORY_TIERS_MB:
        tiers = ", ".join(f"{t}MB" for t in MEMORY_TIERS_MB)
        raise InvalidRequest(
            f"/size: {size!r} is not a memory tier ({tiers})",
            [detail("/size", f"must be one of {tiers}")],
        )
    return int(found.group(1))


def check_env_vars(env_vars: list[str], where: str) -> None:
    total = 0
    for i, item in enumerate(env_vars):
        name, eq, _ = item.partition("=")
        size = len(item.encode())
        total += size + 1
        reason = None
        if not eq or not _ENV_NAME.fullmatch(name):
            reason = "must be NAME=VALUE with NAME a letter or _ then letters, digits or _"
        elif name in RESERVED_ENV_NAMES or name.startswith(RESERVED_ENV_PREFIXES):
            reason = f"{name} is reserved for the runtime and cannot be set"
        elif "\x00" in item:
            reason = "must not contain NUL"
        elif size > MAX_ENV_VAR_BYTES:
            reason = f"is {size} bytes, over the {MAX_ENV_VAR_BYTES}-byte limit of one variable"
        elif total > MAX_ENV_BYTES:
            reason = f"takes the variables over {MAX_ENV_BYTES} bytes in all"
        if reason:
            raise InvalidRequest(f"{where}/{i}: {reason}", [detail(f"{where}/{i}", reason)])


def invalid(path: str, reason: str) -> InvalidRequest:
    return InvalidRequest(f"{path}: {reason}", [detail(path, reason)])


_BLOCKER_FIELDS = {
    HandlerNotFound.code: "/compute_asset/handler",
    RUNTIME_UNAVAILABLE: "/compute_asset/runtime",
    FunctionFailed.code: "/compute_asset/assets",
    Timeout.code: "/compute_asset/timeout",
}


def unpublishable(what: str, blockers: list[Blocker]) -> InvalidRequest:
    reasons = "; ".join(b.message for b in blockers)
    return InvalidRequest(
        f"{what} cannot serve invocations: {reasons}",
        [
            {"path": _BLOCKER_FIELDS.get(b.reason, "/"), "message": b.message, "reason": b.reason}
            for b in blockers
        ],
    )
