"""Routes: change a function (PATCH), its compute asset and history, revisions, aliases, delete."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from executor.api import change_log
from executor.api.access import DEPLOY, READ, guarded_route
from executor.api.context import ctx_of, function_ref
from executor.api.responses import body, read_body, results
from executor.functions.views import compute_asset_view
from schemas.errors import InvalidRequest, NotFound, detail
from schemas.functions import Revision
from schemas.ids import DEFAULT_ALIAS


def _flag(request: Request, name: str, default: bool) -> bool:
    raw = request.query_params.get(name, str(default)).lower()
    if raw not in ("true", "false"):
        raise InvalidRequest(
            f"query parameter {name} must be true or false", [detail(f"?{name}", "true or false")]
        )
    return raw == "true"


def _promote(request: Request) -> bool:
    return _flag(request, "promote", True)


async def patch_function(request: Request) -> Response:
    ctx = ctx_of(request)
    ct, ft = await function_ref(request)
    data = await read_body(request, ctx.settings.max_body_bytes)
    force = _flag(request, "force", False)
    view = await ctx.updates.patch_function(ct, ft, data, promote=_promote(request), force=force)
    change_log.updated(request, ct, ft, view, promote=_promote(request))
    return body(view)


async def delete_function(request: Request) -> Response:
    ctx = ctx_of(request)
    ct, ft = await function_ref(request)
    deleted = await ctx.updates.delete(ct, ft)
    await ctx.dead_letters.remove_function(ct, ft)
    await ctx.schedules.remove_function(ct, ft)
    change_log.deleted(request, ct, ft, deleted)
    return body(deleted)


async def patch_compute_asset(request: Request) -> Response:
    ctx = ctx_of(request)
    ct, ft = await function_ref(request)
    data = await read_body(request, ctx.settings.max_body_bytes)
    force = _flag(request, "force", False)
    view = await ctx.updates.patch_compute_asset(
        ct, ft, data, promote=_promote(request), force=force
    )
    change_log.updated(request, ct, ft, view, promote=_promote(request))
    return body(view)


async def get_compute_asset(request: Request) -> Response:
    ctx = ctx_of(request)
    ct, ft = await function_ref(request)
    record, revision = await ctx.view.resolve(ct, ft)
    assets = await ctx.functions.assets_of(revision)
    view = compute_asset_view(record.collection_topic, record.service, revision, assets)
    return body({**_plain(view), "revision": revision.number, "modified": revision.created})


async def compute_asset_history(request: Request) -> Response:
    """Earlier compute-asset snapshots (every revision but the one production runs), newest
    first, each with the time it was made (``modified``)."""
    ctx = ctx_of(request)
    ct, ft = await function_ref(request)
    _, current = await ctx.view.resolve(ct, ft)
    items = [
        {
            **_plain(compute_asset_view(ct, ft, revision)),
            "revision": revision.number,
            "modified": revision.created,
        }
        for revision in reversed(await ctx.updates.revisions(ct, ft))
        if revision.number != current.number
    ]
    return results(items, len(items))


async def list_revisions(request: Request) -> Response:
    ctx = ctx_of(request)
    ct, ft = await function_ref(request)
    record, _ = await ctx.view.resolve(ct, ft)
    items = [_revision(r, record.aliases) for r in await ctx.updates.revisions(ct, ft)]
    return results(items, len(items))


async def get_revision(request: Request) -> Response:
    ctx = ctx_of(request)
    ct, ft = await function_ref(request)
    number = _number(request.path_params["n"])
    record, revision = await ctx.view.resolve(ct, ft, revision=number)
    return body(_revision(revision, record.aliases))


async def list_aliases(request: Request) -> Response:
    ctx = ctx_of(request)
    ct, ft = await function_ref(request)
    record, _ = await ctx.view.resolve(ct, ft)
    items = [{"alias": a, "revision_number": n} for a, n in sorted(record.aliases.items())]
    return results(items, len(items))


async def get_alias(request: Request) -> Response:
    ctx = ctx_of(request)
    ct, ft = await function_ref(request)
    alias = request.path_params["alias"]
    record, _ = await ctx.view.resolve(ct, ft)
    if alias not in record.aliases:
        raise NotFound(f"function {ct}/{ft} has no alias {alias!r}")
    return body({"alias": alias, "revision_number": record.aliases[alias]})


async def put_alias(request: Request) -> Response:
    ctx = ctx_of(request)
    ct, ft = await function_ref(request)
    data = await read_body(request, 64 * 1024)
    force = _flag(request, "force", False)
    alias = request.path_params["alias"]
    before = await ctx.registry.get_function(ct, ft)  # which revision the alias leaves
    moved = await ctx.updates.put_alias(ct, ft, alias, data, force=force)
    change_log.alias_moved(request, ct, ft, before, alias, int(moved["revision_number"]))
    return body(moved)


def _revision(revision: Revision, aliases: dict[str, int]) -> dict[str, Any]:
    shown = _plain(revision)
    shown = {"revision_number": shown.pop("number"), **shown}  # as aliases call it
    shown["aliases"] = sorted(a for a, n in aliases.items() if n == revision.number)
    shown["production"] = aliases.get(DEFAULT_ALIAS) == revision.number
    return shown


def _plain(value: Any) -> dict[str, Any]:
    shown: dict[str, Any] = msgspec.to_builtins(value)
    return shown


def _number(raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 1_000_000_000:
        raise NotFound(f"no revision {raw!r}")
    return int(raw)


routes = [
    guarded_route("PATCH", "/compute/functions/{ct}/{ft}", DEPLOY, patch_function),
    guarded_route("DELETE", "/compute/functions/{ct}/{ft}", DEPLOY, delete_function),
    guarded_route("GET", "/compute/compute-assets/{ct}/{ft}", READ, get_compute_asset),
    guarded_route("PATCH", "/compute/compute-assets/{ct}/{ft}", DEPLOY, patch_compute_asset),
    guarded_route("GET", "/compute/compute-assets/{ct}/{ft}/history", READ, compute_asset_history),
    guarded_route("GET", "/compute/functions/{ct}/{ft}/revisions", READ, list_revisions),
    guarded_route("GET", "/compute/functions/{ct}/{ft}/revisions/{n}", READ, get_revision),
    guarded_route("GET", "/compute/functions/{ct}/{ft}/aliases", READ, list_aliases),
    guarded_route("GET", "/compute/functions/{ct}/{ft}/aliases/{alias}", READ, get_alias),
    guarded_route("PUT", "/compute/functions/{ct}/{ft}/aliases/{alias}", DEPLOY, put_alias),
]
