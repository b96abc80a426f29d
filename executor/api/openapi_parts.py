"""The pieces the OpenAPI document is made of: error answers per status (derived from the error
classes), the headers and parameters the API reads and sets, envelopes, and ``operation``, which
turns one route's description and its access rule into an OpenAPI operation.

Kept apart from ``openapi.py`` (which lists the operations) so the list reads as a table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from executor.api.access import Rule
from schemas import ids
from schemas.errors import ERRORS_BY_CODE, Expired
from schemas.headers import H_DEADLINE, H_RETRY_AFTER, H_TIMEOUT

Schema = dict[str, Any]

IDEMPOTENCY_KEY = "Idempotency-Key"  # as executor/api/async_invocations.py reads it
X_INVOCATION_ID = "X-Invocation-Id"

# A name for each status an error can answer with (components/responses/<name>).
STATUS_NAMES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    413: "PayloadTooLarge",
    429: "TooManyRequests",
    500: "InternalError",
    502: "BadGateway",
    503: "Unavailable",
    504: "GatewayTimeout",
    507: "InsufficientStorage",
}
_RECORD_ONLY = (Expired.code,)  # codes a monitor record carries, never an HTTP answer


def ref(name: str, kind: str = "schemas") -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


def envelope(inner: Schema) -> Schema:
    return {"type": "object", "properties": {"body": inner}, "required": ["body"]}


# The success envelopes the operations answer with, each a component of its own (a generated
# client gets one FunctionViewBody model, not one per operation); filled as OPERATIONS is built.
ENVELOPES: dict[str, Schema] = {}


def body_of(name: str) -> Schema:
    """``{"body": <name>}``, as ``components/schemas/<name>Body``."""
    ENVELOPES[f"{name}Body"] = envelope(ref(name))
    return ref(f"{name}Body")


def list_of(name: str) -> Schema:
    """``{"body": <name>Page}``, as ``components/schemas/<name>List``."""
    ENVELOPES[f"{name}Page"] = {
        "type": "object",
        "properties": {
            "results": {"type": "array", "items": ref(name)},
            "results_total": {"type": "integer", "minimum": 0},
            "results_incomplete": {
                "type": "boolean",
                "description": "present (true) when the listing could not read everything "
                "in its time; results_total then counts what it read",
            },
        },
        "required": ["results", "results_total"],
    }
    ENVELOPES[f"{name}List"] = envelope(ref(f"{name}Page"))
    return ref(f"{name}List")


ERROR_SCHEMAS: dict[str, Schema] = {
    "ErrorDetail": {
        "type": "object",
        "description": "Where a request went wrong: a JSON pointer (or ?query, or a header "
        "name) and what is wrong there; a handler's failure has its error type and message.",
        "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
    },
    "Error": {
        "type": "object",
        "required": ["error", "code", "details"],
        "properties": {
            "error": {"type": "string", "description": "a human sentence"},
            "code": {
                "type": "string",
                "description": "stable, snake_case: "
                + ", ".join(sorted(c for c in ERRORS_BY_CODE if c not in _RECORD_ONLY)),
            },
            "details": {"type": "array", "items": ref("ErrorDetail")},
        },
    },
}

HEADERS: dict[str, Schema] = {
    "XInvocationId": {
        "description": "the invocation's id (its monitor record is .../invocations/{id})",
        "schema": {"type": "string", "pattern": ids.INVOCATION_ID.pattern},
    },
    "RetryAfter": {
        "description": "seconds to wait before retrying",
        "schema": {"type": "integer", "minimum": 0},
    },
    "WWWAuthenticate": {"schema": {"type": "string"}, "description": 'Bearer realm="computebus"'},
}

PARAMETERS: dict[str, Schema] = {
    "CollectionTopic": {
        "name": "ct",
        "in": "path",
        "required": True,
        "description": "the collection (a bad one is 400)",
        "schema": {"type": "string", "pattern": ids.COLLECTION_TOPIC.pattern},
    },
    "Function": {
        "name": "ft",
        "in": "path",
        "required": True,
        "description": "the function's service id (nine digits) or its name",
        "schema": {"type": "string", "minLength": 1},
    },
    "IdempotencyKey": {
        "name": IDEMPOTENCY_KEY,
        "in": "header",
        "required": False,
        "description": "Async: the same key names the same invocation (and its payload); "
        "retry a 503 with it",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    },
    "ComputeTimeoutMs": {
        "name": H_TIMEOUT,
        "in": "header",
        "required": False,
        "description": "a shorter timeout than the function's, in milliseconds",
        "schema": {"type": "integer", "minimum": 1},
    },
    "ComputeDeadline": {
        "name": H_DEADLINE,
        "in": "header",
        "required": False,
        "description": "Async: unix milliseconds after which a still-queued invocation "
        "expires without running",
        "schema": {"type": "integer", "format": "int64", "minimum": 10**12},
    },
}


def required_header(name: str) -> Schema:
    """``components/headers/<name>`` as a header always sent (a $ref takes no ``required``)."""
    return {**HEADERS[name], "required": True}


def path_param(name: str, schema: Schema, description: str = "") -> Schema:
    param: Schema = {"name": name, "in": "path", "required": True, "schema": schema}
    if description:
        param["description"] = description
    return param


def query(name: str, schema: Schema, description: str = "") -> Schema:
    param: Schema = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        param["description"] = description
    return param


def page(default_limit: int) -> tuple[Schema, ...]:
    """``limit`` and ``offset``, as ``responses.query_int`` bounds them."""
    return (
        query(
            "limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": default_limit}
        ),
        query("offset", {"type": "integer", "minimum": 0, "maximum": 1_000_000, "default": 0}),
    )


def flag(name: str, default: bool, description: str) -> Schema:
    return query(name, {"type": "boolean", "default": default}, description)


FN: tuple[Schema, ...] = (ref("CollectionTopic", "parameters"), ref("Function", "parameters"))


def error_responses() -> dict[str, Schema]:
    """components/responses: one per status, naming the codes it carries."""
    found: dict[str, Schema] = {}
    for status, name in STATUS_NAMES.items():
        found[name] = _error_response(status, _codes(status), {})
    return found


def _codes(status: int) -> list[str]:
    """The codes an HTTP answer with ``status`` can carry."""
    return sorted(
        c for c, cls in ERRORS_BY_CODE.items() if cls.status == status and c not in _RECORD_ONLY
    )


def _error_response(status: int, codes: list[str], extra: dict[str, Schema]) -> Schema:
    headers = dict(extra)
    if status == 401:
        headers["WWW-Authenticate"] = required_header("WWWAuthenticate")
    elif status == 429:
        headers[H_RETRY_AFTER] = required_header("RetryAfter")
    elif status == 503:
        headers[H_RETRY_AFTER] = ref("RetryAfter", "headers")  # with unavailable, not worker_lost
    response: Schema = {
        "description": " or ".join(codes) or "error",
        "content": {"application/json": {"schema": ref("Error")}},
    }
    if headers:
        response["headers"] = headers
    return response


@dataclass(frozen=True)
class Op:
    """One operation as the table states it; ``operation`` adds what its rule implies."""

    operation_id: str
    tag: str
    summary: str
    status: int
    schema: Schema  # the success body
    request: str | None = None  # components/schemas name of the JSON body
    request_required: bool = True
    parameters: tuple[Schema, ...] = ()
    errors: tuple[int, ...] = ()  # statuses besides those of the access rule, 500 and 503
    description: str = ""
    media_types: tuple[str, ...] = ("application/json",)
    more: dict[str, Schema] = field(default_factory=dict)  # other success responses
    invocation_header: bool = False  # X-Invocation-Id on every answer past the token check


_OPTIONAL_TOKEN: list[dict[str, list[str]]] = [{}, {"bearer": []}, {"apiKey": []}]


def operation(op: Op, rule: Rule | None, path: str) -> Schema:
    """The OpenAPI operation of ``op`` behind ``rule`` (None: a route open to anyone)."""
    errors = set(op.errors) | {500}
    if path.startswith("/compute"):
        errors.add(503)  # the bus did not answer
    if rule is not None:
        errors.add(401)
        if rule.need in ("admin", "on_collection"):
            errors.add(403)
        if rule.need == "on_collection":
            errors.add(404)  # also a collection the token cannot see
    success: Schema = {"description": op.summary}
    success["content"] = {media_type: {"schema": op.schema} for media_type in op.media_types}
    if op.invocation_header:
        success["headers"] = {X_INVOCATION_ID: required_header("XInvocationId")}
    responses: dict[str, Schema] = {str(op.status): success}
    responses.update(op.more)
    for status in sorted(errors):
        if op.invocation_header and status not in (401, 403):  # the invoke's own answers
            inv = {X_INVOCATION_ID: ref("XInvocationId", "headers")}
            responses[str(status)] = _error_response(status, _codes(status), inv)
        else:
            responses[str(status)] = ref(STATUS_NAMES[status], "responses")
    found: Schema = {
        "operationId": op.operation_id,
        "tags": [op.tag],
        "summary": op.summary,
        "responses": responses,
    }
    if op.description:
        found["description"] = op.description
    if op.parameters:
        found["parameters"] = list(op.parameters)
    if op.request is not None:
        found["requestBody"] = {
            "required": op.request_required,
            "content": {"application/json": {"schema": ref(op.request)}},
        }
    if rule is None:
        found["security"] = []
    elif rule.need == "ops" or rule.public_invoke:
        found["security"] = _OPTIONAL_TOKEN
    return found
