"""Routes: create, list and show functions, collections and runtimes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

from bus.workers import ping_workers
from executor.api import change_log
from executor.api.access import ANY_TOKEN, READ, caller_of, guarded_route
from executor.api.context import ApiContext, checked_collection, ctx_of, function_ref
from executor.api.responses import body, query_int, read_body, results
from executor.functions.views import function_view
from schemas.errors import Forbidden, FunctionNotFound
from schemas.functions import RUNTIMES, FunctionRecord, FunctionView, RuntimeView
from schemas.ids import DEFAULT_ALIAS


async def create_function(request: Request) -> Response:
    ctx = ctx_of(request)
    data = await read_body(request, ctx.settings.max_body_bytes)
    caller = caller_of(request)

    def may_deploy(ct: str) -> None:
        if caller is None or not caller.grants.allows("deploy", ct):
            raise Forbidden(f"the token may not deploy in collection {ct}")

    view = await ctx.functions.create(data, authorize=may_deploy)
    ctx.metrics.created.inc(())
    change_log.created(request, view)
    return body(view, 201)


def _production(record: FunctionRecord) -> int:
    """The revision a plain GET shows: the one plain invokes run."""
    return record.aliases.get(DEFAULT_ALIAS, record.latest_revision)


async def _views(ctx: ApiContext, records: list[FunctionRecord]) -> list[FunctionView]:
    views = []
    for record in records:
        revision = await ctx.view.revision(
            record.collection_topic, record.service, _production(record)
        )
        if revision is not None:
            view = function_view(record, revision, "function")
            # What a listing (the console's, for one) shows of each: what plain invokes run.
            view.revision = revision.number
            view.aliases = record.aliases
            views.append(view)
    return views


async def _page(request: Request, ct: str | None) -> Response:
    ctx = ctx_of(request)
    limit = query_int(request, "limit", 100, lo=1, hi=1000)
    offset = query_int(request, "offset", 0, lo=0, hi=1_000_000)
    readable = _readable(request)
    records = [r for r in await ctx.registry.list_functions(ct) if readable(r.collection_topic)]
    return results(await _views(ctx, records[offset : offset + limit]), len(records))


def _readable(request: Request) -> Callable[[str], bool]:
    """Whether the caller may read a collection (listings show only those)."""
    caller = caller_of(request)
    if caller is None:
        return lambda ct: False
    grants = caller.grants
    known: dict[str, bool] = {}  # a listing asks once per record, of few collections

    def readable(ct: str) -> bool:
        allowed = known.get(ct)
        if allowed is None:
            allowed = known[ct] = grants.allows("read", ct)
        return allowed

    return readable


async def list_functions(request: Request) -> Response:
    ct = request.query_params.get("collection_topic") or None
    if ct is not None:
        checked_collection(ct, "?collection_topic")
    return await _page(request, ct)


async def collection_functions(request: Request) -> Response:
    return await _page(request, checked_collection(request.path_params["ct"]))


async def get_function(request: Request) -> Response:
    ctx = ctx_of(request)
    ct, ft = await function_ref(request)
    record = await ctx.registry.get_function(ct, ft)
    if record is None:
        raise FunctionNotFound(f"function {ct}/{ft} does not exist")
    revision = await ctx.view.revision(ct, ft, _production(record))
    if revision is None:
        raise FunctionNotFound(f"function {ct}/{ft} has no stored revision")
    assets = await ctx.functions.assets_of(revision)
    view = function_view(record, revision, "function", assets)
    latest = await ctx.view.revision(ct, ft, record.latest_revision) or revision
    view.publish_blockers = await ctx.updates.publish_blockers(ct, ft, latest)
    view.publishable = not view.publish_blockers
    view.schedules = await ctx.schedules.list(ct, ft)
    view.triggers = ctx.triggers.store.of_function(ct, ft)
    return body(view)


async def list_collections(request: Request) -> Response:
    records = await ctx_of(request).registry.list_functions()
    readable = _readable(request)
    counts = Counter(r.collection_topic for r in records if readable(r.collection_topic))
    items = [{"collection_topic": ct, "functions": n} for ct, n in sorted(counts.items())]
    return results(items, len(items))


async def list_runtimes(request: Request) -> Response:
    """What the workers can run (each says so in its ping), not what the API's host has."""
    versions: dict[str, str] = {}
    for worker in await ping_workers(ctx_of(request).nc):
        for name, version in worker.runtimes.items():
            versions.setdefault(name, version)
    items = [
        RuntimeView(name=name, available=name in versions, version=versions.get(name, ""))
        for name in RUNTIMES
    ]
    return results(items, len(items))


routes = [
    guarded_route("POST", "/compute/functions", ANY_TOKEN, create_function),
    guarded_route("GET", "/compute/functions", ANY_TOKEN, list_functions),
    guarded_route("GET", "/compute/functions/{ct}/{ft}", READ, get_function),
    guarded_route("GET", "/compute/collections", ANY_TOKEN, list_collections),
    guarded_route("GET", "/compute/collections/{ct}/functions", ANY_TOKEN, collection_functions),
    guarded_route("GET", "/compute/runtimes", ANY_TOKEN, list_runtimes),
]
