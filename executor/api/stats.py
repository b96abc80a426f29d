"""Routes: invocation stats of a function and of a collection, counted from the monitor records
stored within the window (nothing on the invoke path; see schemas/invocation_stats.py)."""

from __future__ import annotations

import math
import time

from starlette.requests import Request
from starlette.responses import Response

from executor.api.access import ANY_TOKEN, READ, caller_of, guarded_route
from executor.api.context import checked_collection, ctx_of, function_ref
from executor.api.responses import body, query_int
from schemas.errors import FunctionNotFound
from schemas.invocation_stats import (
    CollectionStats,
    check_step,
    collection_stats,
    default_step,
    function_stats,
)

WINDOW_MIN_S = 60
WINDOW_MAX_S = 86_400
WINDOW_DEFAULT_S = 3600


def _window(request: Request) -> tuple[int, int]:
    """``since`` and ``until`` (unix seconds) of ``?window``, up to now (its second included)."""
    window = query_int(request, "window", WINDOW_DEFAULT_S, lo=WINDOW_MIN_S, hi=WINDOW_MAX_S)
    until = math.ceil(time.time())
    return until - window, until


async def function_invocation_stats(request: Request) -> Response:
    ctx = ctx_of(request)
    ct, ft = await function_ref(request)
    since, until = _window(request)
    window = until - since
    step = query_int(request, "step", default_step(window), lo=1, hi=window)
    check_step(window, step)
    if await ctx.view.function(ct, ft) is None:
        raise FunctionNotFound(f"function {ct}/{ft} does not exist")
    read = await ctx.monitor.samples_since(ct, ft, since)
    stats = function_stats(
        read.items, since=since, until=until, step_s=step, complete=read.complete
    )
    return body(stats)


async def collection_invocation_stats(request: Request) -> Response:
    """Like the collection's function listing, a collection the token may not read shows
    nothing (and nothing of it is read)."""
    ctx = ctx_of(request)
    ct = checked_collection(request.path_params["ct"])
    since, until = _window(request)
    caller = caller_of(request)
    if caller is None or not caller.grants.allows("read", ct):
        return body(
            CollectionStats(results=[], results_total=0, window_s=until - since, complete=True)
        )
    services = [record.service for record in await ctx.registry.list_functions(ct)]
    read = await ctx.monitor.samples_since(ct, "*", since)
    stats = collection_stats(
        read.items, since=since, until=until, services=services, complete=read.complete
    )
    return body(stats)


routes = [
    guarded_route("GET", "/compute/functions/{ct}/{ft}/stats", READ, function_invocation_stats),
    guarded_route("GET", "/compute/collections/{ct}/stats", ANY_TOKEN, collection_invocation_stats),
]
