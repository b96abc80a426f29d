"""The real API application without a bus behind it: enough for the routes that touch none
(the OpenAPI document, its viewer) and for the token check's refusals."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
from starlette.applications import Starlette

from executor.api.app import build_app
from executor.api.hot_path import HotPath


def bare_app(*, ops_open: bool) -> Starlette:
    settings = SimpleNamespace(ops_open=ops_open, cors_origins=())
    ctx = SimpleNamespace(tokens=None, view=None, settings=settings)  # what build_app reads
    return build_app(ctx)  # type: ignore[arg-type]


def client(*, ops_open: bool) -> httpx.AsyncClient:
    """A client of the app as ``computebus api`` serves it (behind the hot path)."""
    transport = httpx.ASGITransport(app=HotPath(bare_app(ops_open=ops_open), cors=False))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")
