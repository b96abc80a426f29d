"""Routes for operators: liveness, readiness, metrics, and the OpenAPI document (its viewer is
``docs.py``)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bus.workers import ping_workers
from executor.api.access import OPS, guarded_route
from executor.api.context import ctx_of
from executor.api.openapi import openapi_document
from executor.api.responses import JSON
from schemas.codec import encode
from schemas.control import WorkerInfo


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', 200, media_type=JSON)


async def readyz(request: Request) -> Response:
    """Ready when the bus is reachable and at least one worker answers a ping."""
    ctx = ctx_of(request)
    bus_ok = ctx.nc.is_connected
    workers: list[WorkerInfo] = []
    if bus_ok:
        workers = await ping_workers(ctx.nc)
    isolation = sorted({w.isolation for w in workers})
    gaps = sorted({gap for w in workers for gap in w.isolation_gaps})
    ready = bus_ok and bool(workers)
    state = {
        "ready": ready,
        "bus": "connected" if bus_ok else "disconnected",
        "workers": len(workers),
        "isolation": isolation[0] if len(isolation) == 1 else isolation,
        "isolation_gaps": gaps,
    }
    return Response(encode(state), 200 if ready else 503, media_type=JSON)


async def metrics(request: Request) -> Response:
    text = await ctx_of(request).metrics.exposition()
    return Response(text, 200, media_type=CONTENT_TYPE_LATEST)


async def openapi(request: Request) -> Response:
    """The document of this app's route table, built on the first request."""
    state = request.app.state
    document: bytes | None = getattr(state, "openapi", None)
    if document is None:
        document = state.openapi = openapi_document(request.app.routes)
    return Response(document, 200, media_type=JSON)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    guarded_route("GET", "/metrics", OPS, metrics),
    guarded_route("GET", "/openapi.json", OPS, openapi),
]
