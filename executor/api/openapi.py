"""The OpenAPI document: one ``Op`` per route in ``OPERATIONS``, joined with the app's route
table (each route's access rule gives its security and its 401/403/404), and the msgspec wire
types as components. A route without an entry here, or an entry without a route, fails the
build, so the document cannot drift from what the app serves."""

from __future__ import annotations

import re
from collections.abc import Sequence

import msgspec
from starlette.routing import BaseRoute, Route

from executor.api.event_stream import PING_S, RETRY_MS
from executor.api.openapi_parts import (
    FN,
    HEADERS,
    PARAMETERS,
    Op,
    body_of,
    error_responses,
    flag,
    list_of,
    operation,
    page,
    path_param,
    query,
    ref,
    required_header,
)
from executor.api.openapi_schemas import component_schemas
from executor.api.stats import WINDOW_DEFAULT_S, WINDOW_MAX_S, WINDOW_MIN_S
from executor.settings import env_name
from schemas import ids
from schemas.invocation_stats import MAX_BUCKETS
from schemas.triggers import HTTP_METHODS, TRIGGER_ID

VERSION = "0.1.0"
_SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "an API token (cbt_...)"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
}
TAGS = [
    {"name": "functions", "description": "create, list, show, change and delete functions"},
    {"name": "lifecycle", "description": "compute assets, revisions and aliases"},
    {"name": "invocations", "description": "invoke, monitor records, dead letters, redrive"},
    {"name": "schedules", "description": "run a function on a cron or interval schedule"},
    {"name": "collections", "description": "collections and runtimes"},
    {"name": "tokens", "description": "API tokens (admin)"},
    {"name": "triggers", "description": "HTTP routes to functions, and the routes themselves"},
    {"name": "ops", "description": "health, readiness, metrics, this document and its viewer"},
]
_INVOKE = (
    "RequestResponse: 200 with the handler's result. Async: 202 once the queue has stored the "
    "invocation (retry a 503 with the same Idempotency-Key). Without a token when the function "
    "has access.public_invoke."
)
_ID = path_param("id", {"type": "string", "pattern": ids.INVOCATION_ID.pattern}, "invocation id")
_SCHEDULE = path_param("name", {"type": "string", "minLength": 1}, "schedule name")
_ALIAS = path_param("alias", {"type": "string", "minLength": 1})
_N = path_param("n", {"type": "integer", "minimum": 1, "maximum": 999_999_999}, "revision number")
_PROMOTE = flag("promote", True, "move production to the new revision")
_FORCE = flag("force", False, "promote past the schema compatibility gate")
_TEXT = {"type": "string"}
_TRIGGER_ID = path_param("id", {"type": "string", "pattern": TRIGGER_ID.pattern}, "trigger id")
_ROUTE = (
    "The HTTP route (POST /compute/triggers, type http) whose path is the longest prefix of "
    "this one, for this method (else one of ANY), invokes its function with the request as a "
    "Lambda function-URL event (version 2.0) and answers with the result: one of the shape "
    "{statusCode, headers, body, isBase64Encoded} is the response, any other is JSON with 200. "
    "A route that is not public takes a token that may invoke in the function's collection. "
    "X-Compute-Revision names the revision that served."
)
_WINDOW = query(
    "window",
    {
        "type": "integer",
        "minimum": WINDOW_MIN_S,
        "maximum": WINDOW_MAX_S,
        "default": WINDOW_DEFAULT_S,
    },
    "seconds up to now whose invocations count (by when they started)",
)
_STEP = query(
    "step",
    {"type": "integer", "minimum": 1},
    f"seconds per bucket of the series (default: a thirtieth of the window; at most "
    f"{MAX_BUCKETS} buckets, at most the window)",
)
_LIVE = (
    f"text/event-stream: `retry: {RETRY_MS}`, then the comment `: ready` once subscribed "
    "(whatever finishes after it is sent), then one `event: record` per finished invocation, "
    "its `id` the invocation id and its `data` the monitor record (JSON, as published on "
    f"ms.compute.<ct>.function.<ft>.result.<status>); a `: ping` comment every {PING_S:g} s. "
    "The stream ends when the function is deleted or the API stops. 429 past the API "
    f"process's open streams ({env_name('live_streams_max')})."
)

OPERATIONS: dict[tuple[str, str], Op] = {
    ("POST", "/compute/functions"): Op(
        "createFunction",
        "functions",
        "Create a function",
        201,
        body_of("FunctionView"),
        request="CreateFunctionRequest",
        errors=(400, 403, 409, 413, 507),
    ),
    ("GET", "/compute/functions"): Op(
        "listFunctions",
        "functions",
        "List functions",
        200,
        list_of("FunctionView"),
        parameters=(
            query("collection_topic", {"type": "string", "pattern": ids.COLLECTION_TOPIC.pattern}),
            *page(100),
        ),
        errors=(400,),
    ),
    ("GET", "/compute/functions/{ct}/{ft}"): Op(
        "getFunction",
        "functions",
        "Show a function with its assets",
        200,
        body_of("FunctionView"),
        parameters=FN,
        errors=(400,),
    ),
    ("PATCH", "/compute/functions/{ct}/{ft}"): Op(
        "updateFunction",
        "functions",
        "Change the record (name, description, monitor_config, async_config, limits, access); "
        "schema or size make a new revision",
        200,
        body_of("FunctionView"),
        request="FunctionPatch",
        parameters=(*FN, _PROMOTE, _FORCE),
        errors=(400, 409, 413),
    ),
    ("DELETE", "/compute/functions/{ct}/{ft}"): Op(
        "deleteFunction",
        "functions",
        "Delete a function",
        200,
        body_of("FunctionView"),
        parameters=FN,
        errors=(400,),
    ),
    ("GET", "/compute/compute-assets/{ct}/{ft}"): Op(
        "getComputeAsset",
        "lifecycle",
        "The compute asset production runs",
        200,
        body_of("ComputeAssetShown"),
        parameters=FN,
        errors=(400,),
    ),
    ("PATCH", "/compute/compute-assets/{ct}/{ft}"): Op(
        "updateComputeAsset",
        "lifecycle",
        "New code or runtime config: a new revision (promoted unless promote=false)",
        200,
        body_of("FunctionView"),
        request="ComputeAssetPatch",
        parameters=(*FN, _PROMOTE, _FORCE),
        errors=(400, 409, 413),
    ),
    ("GET", "/compute/compute-assets/{ct}/{ft}/history"): Op(
        "listComputeAssetHistory",
        "lifecycle",
        "Earlier compute-asset snapshots, newest first",
        200,
        list_of("ComputeAssetShown"),
        parameters=FN,
        errors=(400,),
    ),
    ("GET", "/compute/functions/{ct}/{ft}/revisions"): Op(
        "listRevisions",
        "lifecycle",
        "Immutable revisions",
        200,
        list_of("RevisionView"),
        parameters=FN,
        errors=(400,),
    ),
    ("GET", "/compute/functions/{ct}/{ft}/revisions/{n}"): Op(
        "getRevision",
        "lifecycle",
        "One revision",
        200,
        body_of("RevisionView"),
        parameters=(*FN, _N),
        errors=(400,),
    ),
    ("GET", "/compute/functions/{ct}/{ft}/aliases"): Op(
        "listAliases",
        "lifecycle",
        "Aliases and their revisions",
        200,
        list_of("Alias"),
        parameters=FN,
        errors=(400,),
    ),
    ("GET", "/compute/functions/{ct}/{ft}/aliases/{alias}"): Op(
        "getAlias",
        "lifecycle",
        "One alias",
        200,
        body_of("Alias"),
        parameters=(*FN, _ALIAS),
        errors=(400,),
    ),
    ("PUT", "/compute/functions/{ct}/{ft}/aliases/{alias}"): Op(
        "setAlias",
        "lifecycle",
        "Point an alias at a revision (promote, stage, roll back)",
        200,
        body_of("Alias"),
        request="AliasTarget",
        parameters=(*FN, _ALIAS, _FORCE),
        errors=(400, 409, 413),
    ),
    ("POST", "/compute/functions/{ct}/{ft}/invoke"): Op(
        "invokeFunction",
        "invocations",
        "Invoke a function",
        200,
        body_of("InvocationResult"),
        request="InvokeRequest",
        request_required=False,
        description=_INVOKE,
        parameters=(
            *FN,
            query("alias", {"type": "string", "minLength": 1}, "run this alias's revision"),
            query(
                "revision",
                {"type": "integer", "minimum": 1, "maximum": 1_000_000_000},
                "run this revision",
            ),
            ref("ComputeTimeoutMs", "parameters"),
            ref("IdempotencyKey", "parameters"),
            ref("ComputeDeadline", "parameters"),
        ),
        errors=(400, 409, 413, 429, 500, 502, 503, 504),
        invocation_header=True,
        more={
            "202": {
                "description": "Async: stored in the queue",
                "headers": {"X-Invocation-Id": required_header("XInvocationId")},
                "content": {"application/json": {"schema": body_of("Accepted")}},
            }
        },
    ),
    ("GET", "/compute/functions/{ct}/{ft}/invocations"): Op(
        "listInvocations",
        "invocations",
        "Monitor records, newest first",
        200,
        list_of("MonitorRecord"),
        parameters=(
            *FN,
            query("status", {"enum": ["queued", "running", "succeeded", "failed"]}),
            *page(50),
        ),
        errors=(400,),
    ),
    ("GET", "/compute/functions/{ct}/{ft}/invocations/{id}"): Op(
        "getInvocation",
        "invocations",
        "One monitor record",
        200,
        body_of("MonitorRecord"),
        parameters=(*FN, _ID),
        errors=(400,),
    ),
    ("GET", "/compute/functions/{ct}/{ft}/invocations/live"): Op(
        "followInvocations",
        "invocations",
        "Invocations as they finish (server-sent events)",
        200,
        {"type": "string", "description": "server-sent events"},
        description=_LIVE,
        media_types=("text/event-stream",),
        parameters=FN,
        errors=(400, 429),
    ),
    ("GET", "/compute/functions/{ct}/{ft}/stats"): Op(
        "getFunctionStats",
        "invocations",
        "Finished invocations, errors and latency percentiles over a window, with a series",
        200,
        body_of("FunctionStats"),
        description="From the monitor records: only succeeded and failed invocations count "
        "(errors are the failed ones), by when they started; p50_ms and p95_ms are by nearest "
        "rank of duration_ms, null without invocations. complete is false when the records "
        "could not all be read in time (the counts are of those read).",
        parameters=(*FN, _WINDOW, _STEP),
        errors=(400,),
    ),
    ("POST", "/compute/functions/{ct}/{ft}/invocations/{id}/retry"): Op(
        "retryInvocation",
        "invocations",
        "Redrive a dead-lettered Async invocation (a fresh set of attempts)",
        202,
        body_of("Accepted"),
        parameters=(*FN, _ID),
        errors=(400, 409, 429),
    ),
    ("GET", "/compute/functions/{ct}/{ft}/dead-letters"): Op(
        "listDeadLetters",
        "invocations",
        "Async invocations that failed for good, newest first",
        200,
        list_of("DeadLetterView"),
        parameters=(*FN, *page(50)),
        errors=(400,),
    ),
    ("POST", "/compute/functions/{ct}/{ft}/schedules"): Op(
        "createSchedule",
        "schedules",
        "Run the function on a schedule: cron (six fields, seconds first) or every (a duration "
        "of at least 1s); each tick is one Async invocation of production with the payload",
        201,
        body_of("ScheduleView"),
        request="ScheduleRequest",
        parameters=FN,
        errors=(400, 409, 413),
    ),
    ("GET", "/compute/functions/{ct}/{ft}/schedules"): Op(
        "listSchedules",
        "schedules",
        "The function's schedules, by name",
        200,
        list_of("ScheduleView"),
        parameters=FN,
        errors=(400,),
    ),
    ("GET", "/compute/functions/{ct}/{ft}/schedules/{name}"): Op(
        "getSchedule",
        "schedules",
        "One schedule",
        200,
        body_of("ScheduleView"),
        parameters=(*FN, _SCHEDULE),
        errors=(400,),
    ),
    ("DELETE", "/compute/functions/{ct}/{ft}/schedules/{name}"): Op(
        "deleteSchedule",
        "schedules",
        "Stop and delete a schedule (ticks not yet run are dropped)",
        200,
        body_of("ScheduleView"),
        parameters=(*FN, _SCHEDULE),
        errors=(400,),
    ),
    ("GET", "/compute/collections"): Op(
        "listCollections",
        "collections",
        "Collections and their function counts",
        200,
        list_of("Collection"),
    ),
    ("GET", "/compute/collections/{ct}/functions"): Op(
        "listCollectionFunctions",
        "collections",
        "Functions of one collection",
        200,
        list_of("FunctionView"),
        parameters=(FN[0], *page(100)),
        errors=(400,),
    ),
    ("GET", "/compute/collections/{ct}/stats"): Op(
        "getCollectionStats",
        "collections",
        "Per function of a collection: finished invocations, errors and latency over a window",
        200,
        body_of("CollectionStats"),
        description="A row per function with finished invocations in the window, by service "
        "id; a collection the token may not read has none.",
        parameters=(FN[0], _WINDOW),
        errors=(400,),
    ),
    ("GET", "/compute/runtimes"): Op(
        "listRuntimes",
        "collections",
        "Runtimes the workers have",
        200,
        list_of("RuntimeView"),
    ),
    ("POST", "/compute/tokens"): Op(
        "createToken",
        "tokens",
        "Create an API token; the answer shows its secret, this once",
        201,
        body_of("CreatedToken"),
        request="CreateTokenRequest",
        errors=(400, 413),
    ),
    ("GET", "/compute/tokens"): Op(
        "listTokens",
        "tokens",
        "API tokens, without secrets",
        200,
        list_of("TokenView"),
    ),
    ("DELETE", "/compute/tokens/{id}"): Op(
        "revokeToken",
        "tokens",
        "Revoke an API token",
        200,
        body_of("RevokedToken"),
        parameters=(path_param("id", {"type": "string"}, "token id"),),
        errors=(404, 409),
    ),
    ("POST", "/compute/triggers"): Op(
        "createTrigger",
        "triggers",
        "Create a trigger (type http: an HTTP route under /r/; type subject: every message on a "
        "subject becomes an Async invocation)",
        201,
        body_of("Trigger"),
        request="TriggerSpec",
        errors=(400, 403, 404, 409, 413),
    ),
    ("GET", "/compute/triggers"): Op(
        "listTriggers",
        "triggers",
        "Triggers on the collections the token can read",
        200,
        list_of("Trigger"),
        parameters=(
            query("collection_topic", {"type": "string", "pattern": ids.COLLECTION_TOPIC.pattern}),
        ),
        errors=(400,),
    ),
    ("GET", "/compute/triggers/{id}"): Op(
        "getTrigger",
        "triggers",
        "One trigger",
        200,
        body_of("Trigger"),
        parameters=(_TRIGGER_ID,),
        errors=(403, 404),
    ),
    ("PATCH", "/compute/triggers/{id}"): Op(
        "updateTrigger",
        "triggers",
        "Switch a trigger off or on",
        200,
        body_of("Trigger"),
        request="TriggerPatch",
        parameters=(_TRIGGER_ID,),
        errors=(400, 403, 404),
    ),
    ("DELETE", "/compute/triggers/{id}"): Op(
        "deleteTrigger",
        "triggers",
        "Delete a trigger",
        200,
        body_of("Trigger"),
        parameters=(_TRIGGER_ID,),
        errors=(403, 404),
    ),
    **{
        (method, "/r/{path:path}"): Op(
            f"route{method.capitalize()}",
            "triggers",
            f"{method} through an HTTP route",
            200,
            {"description": "what the function answered"},
            description=_ROUTE,
            media_types=("*/*",),
            parameters=(path_param("path", {"type": "string"}, "the path after /r"),),
            errors=(400, 401, 403, 404, 413, 429, 500, 502, 503, 504),
            invocation_header=True,
        )
        for method in HTTP_METHODS
        if method != "HEAD"
    },
    ("GET", "/healthz"): Op("getHealth", "ops", "Liveness", 200, ref("Health")),
    ("GET", "/readyz"): Op(
        "getReadiness",
        "ops",
        "Readiness: bus, workers, isolation level",
        200,
        ref("Readiness"),
        more={
            "503": {
                "description": "not ready",
                "content": {"application/json": {"schema": ref("Readiness")}},
            }
        },
    ),
    ("GET", "/metrics"): Op(
        "getMetrics",
        "ops",
        "Prometheus metrics",
        200,
        _TEXT,
        media_types=("text/plain; version=0.0.4",),
    ),
    ("GET", "/openapi.json"): Op(
        "getOpenApiDocument", "ops", "This document (OpenAPI 3.1)", 200, {"type": "object"}
    ),
    ("GET", "/docs"): Op(
        "getApiDocs",
        "ops",
        "An API viewer (Swagger UI) for this document",
        200,
        _TEXT,
        media_types=("text/html",),
    ),
    ("GET", "/console"): Op(
        "getConsole",
        "ops",
        "The web console (a page that asks for a token, then uses this API)",
        200,
        _TEXT,
        media_types=("text/html",),
    ),
    ("GET", "/console/{asset}"): Op(
        "getConsoleAsset",
        "ops",
        "A file of the web console",
        200,
        _TEXT,
        media_types=("text/javascript", "text/css"),
        parameters=(path_param("asset", {"type": "string"}),),
        errors=(404,),
    ),
    ("GET", "/docs/{asset}"): Op(
        "getApiDocsAsset",
        "ops",
        "A file of the API viewer",
        200,
        _TEXT,
        media_types=("text/javascript", "text/css"),
        parameters=(path_param("asset", {"type": "string"}),),
        errors=(404,),
    ),
}


def openapi_path(path: str) -> str:
    """A route's path as OpenAPI writes it: ``{path:path}`` is ``{path}``."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def openapi_document(routes: Sequence[BaseRoute]) -> bytes:
    """The document for the app whose route table is ``routes``."""
    paths: dict[str, dict[str, object]] = {}
    routed: set[tuple[str, str]] = set()
    for route in routes:
        if not isinstance(route, Route):
            continue
        for method in sorted((route.methods or set()) - {"HEAD"}):
            routed.add((method, route.path))
            op = OPERATIONS.get((method, route.path))
            if op is None:
                raise LookupError(f"{method} {route.path} is routed but not in OPERATIONS")
            rule = getattr(route.endpoint, "rule", None)
            shown = openapi_path(route.path)
            paths.setdefault(shown, {})[method.lower()] = operation(op, rule, route.path)
    unrouted = sorted(set(OPERATIONS) - routed)
    if unrouted:
        raise LookupError(f"OPERATIONS describes routes the app does not have: {unrouted}")
    doc = {
        "openapi": "3.1.0",
        "info": {
            "title": "computebus",
            "version": VERSION,
            "description": "A self-hosted function executor on NATS.",
        },
        "tags": TAGS,
        "paths": paths,
        "components": {
            "schemas": component_schemas(),
            "responses": error_responses(),
            "parameters": PARAMETERS,
            "headers": HEADERS,
            "securitySchemes": _SECURITY_SCHEMES,
        },
        "security": [{"bearer": []}, {"apiKey": []}],
    }
    return msgspec.json.encode(doc)
