"""The operational routes: runtimes, health and readiness, the OpenAPI document, metrics."""

from __future__ import annotations

import re
import uuid

import httpx

from tests.helpers import MakeFunction

NODE_OK = "exports.handler = async (event) => ({ got: event });"


def unique(prefix: str = "c") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def test_runtimes_lists_nodejs_and_python(http: httpx.AsyncClient) -> None:
    response = await http.get("/compute/runtimes")
    assert response.status_code == 200, response.text
    listed = response.json()["body"]
    runtimes = {r["name"]: r for r in listed["results"]}
    assert set(runtimes) == {"nodejs", "python"}
    assert listed["results_total"] == 2
    for runtime in runtimes.values():
        assert runtime["available"] is True
        assert re.match(r"^\d+\.\d+", runtime["version"]), runtime


async def test_healthz_and_readyz(http: httpx.AsyncClient) -> None:
    health = await http.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    ready = await http.get("/readyz")
    assert ready.status_code == 200, ready.text
    state = ready.json()
    assert state["ready"] is True
    assert state["bus"] == "connected"
    assert state["workers"] >= 1
    assert state["isolation"]


async def test_openapi_document_describes_the_routes(http: httpx.AsyncClient) -> None:
    response = await http.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    assert "post" in paths["/compute/functions"]
    assert "get" in paths["/compute/functions"]
    assert "get" in paths["/compute/functions/{ct}/{ft}"]
    assert "post" in paths["/compute/functions/{ct}/{ft}/invoke"]
    for route in (
        "/compute/collections",
        "/compute/collections/{ct}/functions",
        "/compute/runtimes",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert route in paths, route
    create = paths["/compute/functions"]["post"]
    assert "201" in create["responses"]
    ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(schema["required"]) == {"name", "compute_asset", "monitor_config"}
    # Every operation needs a bearer token (or X-Api-Key) but the probes.
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert {"bearer": []} in doc["security"]
    assert paths["/healthz"]["get"]["security"] == []
    assert "security" not in paths["/compute/functions"]["post"]  # the document's default
    assert "delete" in paths["/compute/tokens/{id}"]


async def test_metrics_are_prometheus_text(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function({"index.js": NODE_OK}, collection=unique())
    assert (await http.post(f"{fn.path}/invoke", json={"payload": 1})).status_code == 200
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert re.search(r"^# TYPE computebus_api_invocations(_total)? counter$", text, re.M), text
    mine = f'collection="{fn.collection}",function="{fn.service}",mode="sync",revision="1"'
    assert f'computebus_api_invocations_total{{code="ok",{mine}}} 1.0' in text, text
    created = re.search(r"^computebus_api_functions_created_total ([0-9.e+]+)$", text, re.M)
    assert created and float(created.group(1)) >= 1, text
