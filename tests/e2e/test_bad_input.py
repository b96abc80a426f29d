"""Bad input from a caller gets a 4xx that names the field, never a 5xx, and the connection and
the server keep serving."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.helpers import MakeFunction, function_body

ECHO = {"index.js": "exports.handler = async (e) => e;"}


@pytest.mark.parametrize(
    ("raw", "path"),
    [(b'{"payload": "\xff\xfe"}', "/payload"), (b'{"payload": "\\ud800"}', "/")],
    ids=["invalid-utf8", "lone-surrogate"],
)
async def test_a_string_payload_that_cannot_be_text_is_400_and_keeps_the_connection(
    http: httpx.AsyncClient, make_function: MakeFunction, raw: bytes, path: str
) -> None:
    fn = await make_function(ECHO)
    headers = {"content-type": "application/json"}
    response = await http.post(f"{fn.path}/invoke", content=raw, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["details"][0]["path"] == path
    assert response.headers.get("connection") != "close"
    after = await http.post(f"{fn.path}/invoke", json={"payload": 1})  # same client, same pool
    assert after.json() == {"body": 1}


@pytest.mark.parametrize("where", ["collection", "function", "invocation"])
async def test_an_id_with_a_trailing_newline_is_refused_not_an_error(
    http: httpx.AsyncClient, make_function: MakeFunction, where: str
) -> None:
    fn = await make_function(ECHO)
    ct, ft = fn.collection, fn.service
    if where == "collection":
        path = f"/compute/functions/{ct}%0A/{ft}"
    elif where == "function":
        path = f"/compute/functions/{ct}/{ft}%0A"
    else:
        path = f"{fn.path}/invocations/abc%0A"
    response = await http.get(path)
    assert response.status_code in (400, 404), response.text
    if where != "invocation":  # the id with its newline never names the function
        invoked = await http.post(path + "/invoke", json={"payload": 1})
        assert invoked.status_code in (400, 404), invoked.text


async def test_a_deep_value_under_a_recursive_schema_is_refused_not_an_error(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    recursive = {"type": "array", "items": {"$ref": "#"}}
    deep = "[" * 900 + "]" * 900
    as_input = await make_function(ECHO, schema={"input": recursive})
    response = await http.post(
        f"{as_input.path}/invoke",
        content=b'{"payload": ' + deep.encode() + b"}",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_input"
    assert "nested too deeply" in response.text
    returns_deep = {"index.js": f"exports.handler = async () => {deep};"}
    as_output = await make_function(returns_deep, schema={"output": recursive})
    answer = await http.post(f"{as_output.path}/invoke", json={"payload": None})
    assert answer.status_code == 502, answer.text
    assert answer.json()["code"] == "invalid_output"


@pytest.mark.parametrize(
    ("env_vars", "index", "says"),
    [
        (["BIG=" + "x" * 200_000], 0, "32768-byte limit"),
        ([f"V{i}=" + "y" * 2000 for i in range(1500)], 65, "131072 bytes in all"),
    ],
    ids=["one-200KB-value", "1500-of-2KB"],
)
async def test_env_vars_too_big_to_exec_are_refused_at_create(
    http: httpx.AsyncClient, env_vars: list[str], index: int, says: str
) -> None:
    body = function_body(ECHO, compute_asset={"env_vars": env_vars})
    response = await http.post("/compute/functions", json=body)
    assert response.status_code == 400, response.text[:300]
    assert response.json()["details"][0]["path"] == f"/compute_asset/env_vars/{index}"
    assert says in response.json()["error"]


@pytest.mark.parametrize(
    ("change", "path", "says"),
    [
        ({"monitor_config": {"ttl": 8_000_000_000_000}}, "/monitor_config/ttl", "31622400000"),
        ({"async_config": {"backoff_ms": 2**63}}, "/async_config/backoff_ms", "86400000"),
        ({"description": "d" * 5000}, "/description", "4096 characters"),
    ],
    ids=["ttl", "backoff_ms", "description"],
)
async def test_values_that_would_misbehave_are_bounded(
    http: httpx.AsyncClient,
    make_function: MakeFunction,
    change: dict[str, object],
    path: str,
    says: str,
) -> None:
    created = await http.post("/compute/functions", json={**function_body(ECHO), **change})
    assert created.status_code == 400, created.text[:300]
    assert created.json()["details"][0]["path"] == path
    assert says in created.json()["error"]
    fn = await make_function(ECHO)
    patched = await http.patch(fn.path, json=change)
    assert patched.status_code == 400, patched.text[:300]
    assert patched.json()["details"][0]["path"] == path


async def test_a_revision_record_too_big_for_the_bus_is_413(http: httpx.AsyncClient) -> None:
    deep = "/".join(["d" * 200] * 5)  # 1 KB names, in segments a file system takes
    files = {f"{deep}/{i}.txt": "x" for i in range(9000)}
    files["index.js"] = ECHO["index.js"]
    body = function_body(files)
    response = await http.post("/compute/functions", json=body)
    assert response.status_code == 413, response.text[:300]
    assert response.json()["code"] == "payload_too_large"
    assert "limit of one message on the bus" in response.json()["error"]
    # Nothing of it stayed: the name is free again.
    again = await http.post("/compute/functions", json=function_body(ECHO, name=body["name"]))
    assert again.status_code == 201, again.text


async def test_a_million_tiny_assets_are_refused_before_decoding(http: httpx.AsyncClient) -> None:
    body = function_body(ECHO)
    body["compute_asset"]["assets"] = [
        {"asset_name": f"f{i}", "asset_value": ""} for i in range(200_000)
    ]
    healthy = asyncio.create_task(_health_during(http))
    response = await http.post("/compute/functions", json=body)
    assert response.status_code == 413, response.text[:300]
    assert response.json()["details"][0]["path"] == "/compute_asset/assets"
    assert "200000 assets, over the limit of 10000" in response.json()["error"]
    assert await healthy


async def _health_during(http: httpx.AsyncClient) -> bool:
    for _ in range(5):
        if (await http.get("/healthz")).status_code != 200:
            return False
        await asyncio.sleep(0.01)
    return True


async def test_errors_name_the_allowed_values_and_hint_at_common_slips(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    async def refused(body: dict[str, Any], path: str = "/compute/functions") -> str:
        response = await http.post(path, json=body)
        assert response.status_code == 400, response.text
        message: str = response.json()["error"]
        return message

    echo = {"index.js": "exports.handler = async (e) => e;"}
    ruby = function_body(echo, compute_asset={"runtime": "ruby"})
    assert await refused(ruby) == (
        "/compute_asset/runtime: must be one of nodejs, python; got 'ruby'"
    )
    assert "index.handler (the nodejs runtime adds .js)" in await refused(
        function_body(echo, handler="index.js.handler")
    )
    assert "(the bundle has index.js: is the runtime nodejs?)" in await refused(
        function_body(echo, runtime="python")
    )
    no_monitor = function_body(echo)
    del no_monitor["monitor_config"]
    assert await refused(no_monitor) == "/monitor_config: is required"

    fn = await make_function(echo)
    invoke = f"{fn.path}/invoke"
    assert await refused({"payload": 1, "invocation_type": "async"}, invoke) == (
        "/invocation_type: must be one of Async, RequestResponse; got 'async'"
    )
    unwrapped = await refused({"name": "Ada"}, invoke)
    assert unwrapped.startswith("/name: is not a known field")
    assert 'did the event miss its "payload" wrapper?' in unwrapped
