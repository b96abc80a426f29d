"""The Starlette application: routes from each module, one error mapping, nothing else."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import nats.errors
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from executor.api import (
    console,
    docs,
    functions,
    http_routes,
    invocations,
    lifecycle,
    live,
    ops,
    schedules,
    stats,
    tokens,
    triggers,
)
from executor.api.access import Access
from executor.api.context import ApiContext, ctx_of
from executor.api.cors import cors_middleware
from executor.api.responses import error_response
from schemas.errors import ComputeError, InternalError, InvalidRequest, NotFound, Unavailable

log = logging.getLogger("computebus.api")


async def _compute_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ComputeError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(NotFound(f"no route {request.method} {request.url.path}"))
    if exc.status_code == 405:
        error = InvalidRequest(f"method {request.method} is not allowed on {request.url.path}")
        response = error_response(error)
        response.status_code = 405
        return response
    return error_response(InvalidRequest(str(exc.detail)))


async def _bus_error(request: Request, exc: Exception) -> Response:
    """NATS did not answer (it is restarting, or the connection is reconnecting): retry later."""
    log.warning("bus error on %s %s: %r %s", request.method, request.url.path, exc, exc)
    return error_response(Unavailable(f"the bus did not answer ({type(exc).__name__}); retry"))


async def _unexpected(request: Request, exc: Exception) -> Response:
    if isinstance(exc, RuntimeError | ConnectionError) and not ctx_of(request).nc.is_connected:
        # The connection to NATS broke under the request: under uvloop nats-py's write to the
        # closed transport raises RuntimeError, not a nats error. The bus is away, not broken.
        return await _bus_error(request, exc)
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(InternalError("internal error; see the API log"))


# What each kind of error is answered with: Starlette's exception handlers, and the hot path's.
_ANSWERS: dict[type[Exception], Callable[[Request, Exception], Awaitable[Response]]] = {
    ComputeError: _compute_error,
    HTTPException: _http_error,
    nats.errors.Error: _bus_error,
    Exception: _unexpected,
}


async def answer_error(request: Request, exc: Exception) -> Response:
    """What the application's exception handlers answer for ``exc`` (for the hot path, which
    runs outside them): the handler of its nearest class, as Starlette picks it."""
    for kind in type(exc).__mro__:
        if kind in _ANSWERS:
            return await _ANSWERS[kind](request, exc)
    return await _unexpected(request, exc)


def build_app(ctx: ApiContext) -> Starlette:
    app = Starlette(
        # The hot route first, but for .../invocations/live, which .../invocations/{id} would take.
        routes=[
            *live.routes,
            *invocations.routes,
            *functions.routes,
            *stats.routes,
            *lifecycle.routes,
            *schedules.routes,
            *tokens.routes,
            *triggers.routes,
            *http_routes.routes,
            *ops.routes,
            *docs.routes,
            *console.routes,
        ],
        middleware=cors_middleware(ctx.settings.cors_origins),
        exception_handlers=dict(_ANSWERS),
    )
    # A trailing slash is a 404 like any unknown path, not a redirect built from the Host header.
    app.router.redirect_slashes = False
    app.state.ctx = ctx
    app.state.access = Access(ctx.tokens, ctx.view, ops_public=ctx.settings.ops_open)
    return app
