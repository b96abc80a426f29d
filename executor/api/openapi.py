"""The OpenAPI document, built once from the route table and the msgspec wire types."""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec

from schemas.functions import (
    AliasTarget,
    ComputeAssetPatch,
    ComputeAssetView,
    CreateFunctionRequest,
    FunctionPatch,
    FunctionView,
    Revision,
    RuntimeView,
)
from schemas.invocations import Accepted, DeadLetterView, InvokeRequest, MonitorRecord
from schemas.tokens import CreatedToken, CreateTokenRequest, TokenView

_TYPES = (
    Accepted,
    AliasTarget,
    DeadLetterView,
    ComputeAssetPatch,
    ComputeAssetView,
    CreateFunctionRequest,
    FunctionPatch,
    FunctionView,
    InvokeRequest,
    MonitorRecord,
    Revision,
    RuntimeView,
    CreateTokenRequest,
    CreatedToken,
    TokenView,
)
_SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "an API token (cbt_...)"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
}
_PUBLIC: list[dict[str, list[str]]] = []  # an operation's security: no token needed
_ALIAS = {
    "type": "object",
    "properties": {"alias": {"type": "string"}, "revision_number": {"type": "integer"}},
}

_ERROR = {
    "type": "object",
    "required": ["error", "code", "details"],
    "properties": {
        "error": {"type": "string"},
        "code": {"type": "string"},
        "details": {"type": "array", "items": {"type": "object"}},
    },
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _envelope(inner: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {"body": inner}, "required": ["body"]}


def _list(inner: dict[str, Any]) -> dict[str, Any]:
    return _envelope(
        {
            "type": "object",
            "properties": {
                "results": {"type": "array", "items": inner},
                "results_total": {"type": "integer"},
                "results_incomplete": {
                    "type": "boolean",
                    "description": "present (true) when the listing could not read everything "
                    "in its time; results_total then counts what it read",
                },
            },
        }
    )


def _op(
    summary: str,
    ok: int,
    ok_schema: dict[str, Any] | None,
    *,
    request: str | None = None,
    params: tuple[str, ...] = (),
    query: tuple[str, ...] = (),
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "parameters": [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in params
        ]
        + [
            {"name": q, "in": "query", "required": False, "schema": {"type": "string"}}
            for q in query
        ],
        "responses": {
            str(ok): {
                "description": "success",
                "content": {"application/json": {"schema": ok_schema or {"type": "object"}}},
            },
            "default": {
                "description": "error",
                "content": {"application/json": {"schema": _ref("Error")}},
            },
        },
    }
    if request:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(request)}},
        }
    return op


FN = ("ct", "ft")


@cache
def openapi_document() -> bytes:
    _, components = msgspec.json.schema_components(
        _TYPES, ref_template="#/components/schemas/{name}"
    )
    components["Error"] = _ERROR
    invoke = _op(
        "Invoke a function (200 with the result, or 202 once an Async invocation is queued)",
        200,
        _envelope({}),
        request="InvokeRequest",
        params=FN,
        query=("alias", "revision"),
    )
    invoke["responses"]["202"] = {
        "description": "Async: stored in the queue",
        "content": {"application/json": {"schema": _envelope(_ref("Accepted"))}},
    }
    paths = {
        "/compute/functions": {
            "post": _op(
                "Create a function",
                201,
                _envelope(_ref("FunctionView")),
                request="CreateFunctionRequest",
            ),
            "get": _op(
                "List functions",
                200,
                _list(_ref("FunctionView")),
                query=("collection_topic", "limit", "offset"),
            ),
        },
        "/compute/functions/{ct}/{ft}": {
            "get": _op(
                "Show a function with its assets", 200, _envelope(_ref("FunctionView")), params=FN
            ),
            "patch": _op(
                "Change name, description, monitor_config; schema or size make a new revision",
                200,
                _envelope(_ref("FunctionView")),
                request="FunctionPatch",
                params=FN,
                query=("promote",),
            ),
            "delete": _op("Delete a function", 200, _envelope(_ref("FunctionView")), params=FN),
        },
        "/compute/compute-assets/{ct}/{ft}": {
            "get": _op(
                "The compute asset production runs",
                200,
                _envelope(_ref("ComputeAssetView")),
                params=FN,
            ),
            "patch": _op(
                "New code or runtime config: a new revision (promoted unless promote=false)",
                200,
                _envelope(_ref("FunctionView")),
                request="ComputeAssetPatch",
                params=FN,
                query=("promote",),
            ),
        },
        "/compute/compute-assets/{ct}/{ft}/history": {
            "get": _op(
                "Earlier compute-asset snapshots, newest first",
                200,
                _list(_ref("ComputeAssetView")),
                params=FN,
            ),
        },
        "/compute/functions/{ct}/{ft}/revisions": {
            "get": _op("Immutable revisions", 200, _list(_ref("Revision")), params=FN),
        },
        "/compute/functions/{ct}/{ft}/revisions/{n}": {
            "get": _op("One revision", 200, _envelope(_ref("Revision")), params=(*FN, "n")),
        },
        "/compute/functions/{ct}/{ft}/aliases": {
            "get": _op("Aliases and their revisions", 200, _list(_ALIAS), params=FN),
        },
        "/compute/functions/{ct}/{ft}/aliases/{alias}": {
            "get": _op("One alias", 200, _envelope(_ALIAS), params=(*FN, "alias")),
            "put": _op(
                "Point an alias at a revision (promote, stage, roll back)",
                200,
                _envelope(_ALIAS),
                request="AliasTarget",
                params=(*FN, "alias"),
                query=("force",),
            ),
        },
        "/compute/functions/{ct}/{ft}/invoke": {"post": invoke},
        "/compute/functions/{ct}/{ft}/invocations": {
            "get": _op(
                "Monitor records, newest first",
                200,
                _list(_ref("MonitorRecord")),
                params=FN,
                query=("status", "limit", "offset"),
            ),
        },
        "/compute/functions/{ct}/{ft}/invocations/{id}": {
            "get": _op(
                "One monitor record", 200, _envelope(_ref("MonitorRecord")), params=(*FN, "id")
            ),
        },
        "/compute/functions/{ct}/{ft}/invocations/{id}/retry": {
            "post": _op(
                "Redrive a dead-lettered Async invocation (a fresh set of attempts)",
                202,
                _envelope(_ref("Accepted")),
                params=(*FN, "id"),
            ),
        },
        "/compute/functions/{ct}/{ft}/dead-letters": {
            "get": _op(
                "Async invocations that failed for good, newest first",
                200,
                _list(_ref("DeadLetterView")),
                params=FN,
                query=("limit", "offset"),
            ),
        },
        "/compute/collections": {"get": _op("Collections and their function counts", 200, None)},
        "/compute/collections/{ct}/functions": {
            "get": _op(
                "Functions of one collection", 200, _list(_ref("FunctionView")), params=("ct",)
            ),
        },
        "/compute/runtimes": {"get": _op("Runtimes", 200, _list(_ref("RuntimeView")))},
        "/compute/tokens": {
            "post": _op(
                "Create an API token (admin); the answer shows its secret, this once",
                201,
                _envelope(_ref("CreatedToken")),
                request="CreateTokenRequest",
            ),
            "get": _op("API tokens, without secrets (admin)", 200, _list(_ref("TokenView"))),
        },
        "/compute/tokens/{id}": {
            "delete": _op("Revoke an API token (admin)", 200, None, params=("id",)),
        },
        "/healthz": {"get": {**_op("Liveness", 200, None), "security": _PUBLIC}},
        "/readyz": {
            "get": {
                **_op("Readiness: bus, workers, isolation level", 200, None),
                "security": _PUBLIC,
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (without a token when COMPUTEBUS_OPS_PUBLIC)",
                "responses": {"200": {"description": "text"}},
            }
        },
    }
    invoke["description"] = "Without a token when the function has access.public_invoke."
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "computebus", "version": "0.1.0"},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": _SECURITY_SCHEMES},
        "security": [{"bearer": []}, {"apiKey": []}],
    }
    return msgspec.json.encode(doc)
