"""One INFO line per change an API makes to a function (created, updated, promoted, rolled back,
deleted) or to the tokens (created, revoked), naming the token that made it: its id and name,
never its secret. Nothing of the change's body is logged (code, schemas and env_vars stay out).
"""

from __future__ import annotations

import logging

from starlette.requests import Request

from executor.api.access import caller_of
from schemas.functions import FunctionRecord, FunctionView

log = logging.getLogger("computebus.changes")


def _by(request: Request) -> tuple[str, dict[str, str | None]]:
    caller = caller_of(request)
    if caller is None:
        return "no token", {"token_id": None, "token_name": None}
    text = f"token {caller.name!r} ({caller.token_id})"
    return text, {"token_id": caller.token_id, "token_name": caller.name}


def _function(
    request: Request, change: str, ct: str, ft: str, name: str, revision: int | None, note: str
) -> None:
    if not log.isEnabledFor(logging.INFO):
        return
    by, who = _by(request)
    log.info(
        "function %s/%s (%s) %s%s by %s",
        ct,
        name,
        ft,
        change,
        note,
        by,
        extra={
            "change": change,
            "function": f"{ct}/{name}",
            "collection_topic": ct,
            "service": ft,
            "revision": revision,
            **who,
        },
    )


def created(request: Request, view: FunctionView) -> None:
    asset = view.compute_asset
    _function(
        request, "created", asset.collection_topic, asset.service, view.name, 1, ", revision 1"
    )


def updated(request: Request, ct: str, ft: str, view: FunctionView, *, promote: bool) -> None:
    """A PATCH: a new revision (promoted to production when ``promote``, else staged), or
    metadata only."""
    new = view.new_revision if isinstance(view.new_revision, int) else None
    note = ""
    if new is not None:
        note = f", revision {new} {'promoted' if promote else 'staged'}"
    _function(request, "updated", ct, ft, view.name, new, note)


def alias_moved(
    request: Request, ct: str, ft: str, before: FunctionRecord | None, alias: str, to: int
) -> None:
    """``rolled back`` when the alias moved to an older revision than it had, else ``promoted``."""
    was = before.aliases.get(alias) if before is not None else None
    change = "rolled back" if was is not None and to < was else "promoted"
    name = before.name if before is not None else ft
    note = f": alias {alias} {was if was is not None else '(new)'} -> {to}"
    _function(request, change, ct, ft, name, to, note)


def deleted(request: Request, ct: str, ft: str, view: FunctionView) -> None:
    _function(request, "deleted", ct, ft, view.name, None, "")


def token_changed(request: Request, change: str, token_id: str, name: str) -> None:
    """``created`` or ``revoked``: the token's id and name (its secret is never logged)."""
    by, who = _by(request)
    log.info(
        "token %r (%s) %s by %s",
        name,
        token_id,
        change,
        by,
        extra={"change": f"token {change}", "subject_token_id": token_id, **who},
    )
