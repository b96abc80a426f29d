"""The OpenAPI document: valid OpenAPI 3.1 (checked by openapi-spec-validator), one operation
with a unique operationId and a tag for every route the app has, the headers and error answers
clients need, and numbers typed as numbers."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from openapi_spec_validator import validate
from starlette.routing import Route

from executor.api.openapi import TAGS, openapi_document, openapi_path
from executor.api.openapi_parts import STATUS_NAMES
from schemas.errors import ERRORS_BY_CODE
from tests.executor.api.bare_app import bare_app, client

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def doc() -> Doc:
    found: Doc = json.loads(openapi_document(bare_app(ops_open=True).routes))
    return found


def routed() -> set[tuple[str, str]]:
    return {
        (method.lower(), openapi_path(route.path))
        for route in bare_app(ops_open=True).routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }


def operations(doc: Doc) -> Iterator[tuple[str, str, Doc]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            yield method, path, op


def resolve(doc: Doc, node: Doc) -> Doc:
    while "$ref" in node:
        _, kind, name = node["$ref"].removeprefix("#/").split("/")
        node = doc["components"][kind][name]
    return node


def test_the_document_is_valid_openapi_3_1(doc: Doc) -> None:
    assert doc["openapi"] == "3.1.0"
    validate(doc)  # raises with the failing location


def test_every_route_has_one_operation_with_a_unique_id_and_a_tag(doc: Doc) -> None:
    assert {(m, p) for m, p, _ in operations(doc)} == routed()
    ids = Counter(op["operationId"] for _, _, op in operations(doc))
    assert [i for i, n in ids.items() if n > 1] == []
    known_tags = {t["name"] for t in TAGS}
    for method, path, op in operations(doc):
        assert op["operationId"].isidentifier() and op["operationId"][0].islower(), path
        assert len(op["tags"]) == 1 and op["tags"][0] in known_tags, (method, path)
    assert ids.keys() >= {
        "createFunction",
        "invokeFunction",
        "listInvocations",
        "getInvocation",
        "listFunctions",
        "setAlias",
        "getApiDocs",
    }


def test_every_error_status_has_a_named_answer() -> None:
    assert {cls.status for cls in ERRORS_BY_CODE.values()} <= STATUS_NAMES.keys()


def test_a_route_without_an_operation_fails_the_build() -> None:
    app = bare_app(ops_open=True)
    app.router.routes.append(Route("/undocumented", lambda request: None, methods=["GET"]))
    with pytest.raises(LookupError, match="GET /undocumented"):
        openapi_document(app.routes)


def test_security_and_auth_answers_follow_each_routes_rule(doc: Doc) -> None:
    paths = doc["paths"]
    assert paths["/healthz"]["get"]["security"] == []
    assert "401" not in paths["/healthz"]["get"]["responses"]
    assert "security" not in paths["/compute/functions"]["post"]  # the document's default
    for ops_path in ("/metrics", "/openapi.json", "/docs"):  # open on loopback or when set
        assert {} in paths[ops_path]["get"]["security"]
    invoke = paths["/compute/functions/{ct}/{ft}/invoke"]["post"]
    assert {} in invoke["security"]  # a function may opt in to public_invoke
    tokens = paths["/compute/tokens"]["get"]["responses"]
    assert {"401", "403"} <= tokens.keys()
    unauthorized = resolve(doc, tokens["401"])
    assert unauthorized["headers"]["WWW-Authenticate"]["required"] is True
    for method, path, op in operations(doc):
        if path.startswith("/compute"):
            assert {"401", "500", "503"} <= op["responses"].keys(), (method, path)


def test_invoke_documents_its_headers(doc: Doc) -> None:
    invoke = doc["paths"]["/compute/functions/{ct}/{ft}/invoke"]["post"]
    headers = {
        p["name"]: p["schema"]
        for p in (resolve(doc, p) for p in invoke["parameters"])
        if p["in"] == "header"
    }
    assert headers.keys() == {"Idempotency-Key", "Compute-Timeout-Ms", "Compute-Deadline"}
    assert headers["Compute-Timeout-Ms"]["type"] == "integer"
    assert headers["Compute-Deadline"]["type"] == "integer"
    responses = invoke["responses"]
    for status in ("200", "202"):
        assert responses[status]["headers"]["X-Invocation-Id"]["required"] is True
    for status in ("400", "404", "409", "413", "429", "500", "502", "503", "504"):
        assert "X-Invocation-Id" in responses[status]["headers"], status
    assert responses["429"]["headers"]["Retry-After"]["required"] is True
    assert "Retry-After" in responses["503"]["headers"]
    assert (
        "202"
        in doc["paths"]["/compute/functions/{ct}/{ft}/invocations/{id}/retry"]["post"]["responses"]
    )


def test_error_answers_carry_the_error_body_per_status(doc: Doc) -> None:
    error = doc["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"error", "code", "details"}
    for name, response in doc["components"]["responses"].items():
        schema = response["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Error"}, name
    too_many = doc["components"]["responses"]["TooManyRequests"]
    assert too_many["headers"]["Retry-After"]["required"] is True
    assert "rate_limited" in too_many["description"] and "overloaded" in too_many["description"]
    assert "Retry-After" in doc["components"]["responses"]["Unavailable"]["headers"]
    create = doc["paths"]["/compute/functions"]["post"]["responses"]
    assert {"400", "403", "409", "413", "507"} <= create.keys()
    for method, path, op in operations(doc):
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")) and (method, path) != ("get", "/readyz"):
                content = resolve(doc, response)["content"]["application/json"]
                assert content["schema"] == {"$ref": "#/components/schemas/Error"}, (path, status)


NUMERIC = {"limit", "offset", "revision", "n", "number", "attempts", "workers", "functions"}
NUMERIC_ENDINGS = ("_ms", "_s", "_total", "_number", "_mb", "_attempts", "ttl", "timeout")


def _types(schema: Doc) -> set[str]:
    found = {schema["type"]} if isinstance(schema.get("type"), str) else set(schema.get("type", []))
    for alternative in schema.get("anyOf", []):
        found |= _types(alternative)
    return found


def _named_schemas(node: Any, name: str = "") -> Iterator[tuple[str, Doc]]:
    """Every (property or parameter name, its schema) in the document."""
    if isinstance(node, dict):
        if isinstance(node.get("in"), str) and isinstance(node.get("schema"), dict):
            yield node["name"], node["schema"]
        for key, value in node.get("properties", {}).items():
            if isinstance(value, dict):
                yield key, value
        for value in node.values():
            yield from _named_schemas(value)
    elif isinstance(node, list):
        for value in node:
            yield from _named_schemas(value)


def test_numbers_are_typed_as_numbers(doc: Doc) -> None:
    checked = []
    for name, schema in _named_schemas(doc):
        key = name.lower().replace("-", "_")
        if "$ref" in schema or not (key in NUMERIC or key.endswith(NUMERIC_ENDINGS)):
            continue
        checked.append(name)
        assert _types(schema) - {"null"} <= {"integer", "number"}, (name, schema)
        assert _types(schema) & {"integer", "number"}, (name, schema)
    assert {"limit", "offset", "revision", "Compute-Timeout-Ms", "duration_ms", "ttl"} <= set(
        checked
    )
    record = doc["components"]["schemas"]["MonitorRecord"]["properties"]
    assert record["duration_ms"]["type"] == "number"  # a float, not an integer
    assert record["started"]["type"] == "integer"
    limits = doc["components"]["schemas"]["FunctionLimits"]["properties"]
    assert _types(limits["rps"]) == {"number"}


def test_schemas_are_shared_through_refs(doc: Doc) -> None:
    text = json.dumps(doc["paths"])
    assert text.count('"#/components/schemas/FunctionViewBody"') >= 5
    assert text.count('"#/components/schemas/FunctionViewList"') == 2
    schemas = doc["components"]["schemas"]
    assert schemas["FunctionViewBody"]["properties"]["body"] == {
        "$ref": "#/components/schemas/FunctionView"
    }
    page = schemas["FunctionViewPage"]["properties"]
    assert page["results_total"]["type"] == "integer"
    everything = json.dumps(doc)
    for name in schemas:  # none unused
        assert everything.count(f'"#/components/schemas/{name}"') >= 1, name
    assert text.count('"#/components/responses/Unauthorized"') >= 10
    assert '"properties": {"error"' not in text  # the error body is never inlined
    revision = doc["components"]["schemas"]["RevisionView"]
    assert "revision_number" in revision["required"] and "number" not in revision["properties"]


async def test_the_app_serves_the_document() -> None:
    async with client(ops_open=True) as http:
        answer = await http.get("/openapi.json")
        again = await http.get("/openapi.json")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["paths"].keys() == {p for _, p in routed()}
    assert again.content == answer.content


def test_a_trigger_body_is_one_of_its_kinds_told_apart_by_type(doc: Doc) -> None:
    create = doc["paths"]["/compute/triggers"]["post"]
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/TriggerSpec"}
    schemas = doc["components"]["schemas"]
    spec = schemas["TriggerSpec"]
    assert spec["discriminator"] == {"propertyName": "type"}
    assert {s["$ref"].rsplit("/", 1)[1] for s in spec["oneOf"]} == {
        "HttpTriggerSpec",
        "SubjectTriggerSpec",
    }
    subject = schemas["SubjectTriggerSpec"]
    assert subject["properties"]["type"] == {"enum": ["subject"]}
    assert set(subject["required"]) == {"type", "source", "function"}
    assert {s["$ref"].rsplit("/", 1)[1] for s in schemas["Trigger"]["oneOf"]} == {
        "HttpTrigger",
        "SubjectTrigger",
    }
