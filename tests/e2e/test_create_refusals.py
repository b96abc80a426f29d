"""Every bad create body is a 400 (or 413) that names the field and stores nothing; schemas
with internal refs validate invocations."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from nats.aio.client import Client

from tests.e2e.bodies import (
    CREATE,
    NODE_OK,
    add_asset,
    assert_error,
    bundle_count,
    registry_keys,
    total,
    unique,
    with_,
    without,
    zip_bytes,
)
from tests.helpers import (
    Stack,
    b64,
    function_body,
    second_api,
)

# ---- bad input ----------------------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], dict[str, Any]]


def _ct(value: str) -> Mutation:
    return lambda b: with_(b, "/compute_asset/collection_topic", value)


def _asset_named(name: str) -> Mutation:
    return lambda b: add_asset(b, name, "x")


def _deep_schema(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {}
    for _ in range(depth):
        schema = {"not": schema}
    return schema


BAD_INPUT: list[tuple[str, Mutation, str, str | None]] = [
    # (id, how the good body is spoilt, the path details[0] must name, a word the error must say)
    ("missing-name", lambda b: without(b, "/name"), "/name", None),
    ("missing-compute_asset", lambda b: without(b, "/compute_asset"), "/compute_asset", None),
    ("missing-monitor_config", lambda b: without(b, "/monitor_config"), "/monitor_config", None),
    (
        "missing-handler",
        lambda b: without(b, "/compute_asset/handler"),
        "/compute_asset/handler",
        None,
    ),
    (
        "missing-collection_topic",
        lambda b: without(b, "/compute_asset/collection_topic"),
        "/compute_asset/collection_topic",
        None,
    ),
    (
        "missing-assets",
        lambda b: without(b, "/compute_asset/assets"),
        "/compute_asset/assets",
        None,
    ),
    (
        "missing-asset_value",
        lambda b: without(b, "/compute_asset/assets/0/asset_value"),
        "/compute_asset/assets/0/asset_value",
        None,
    ),
    (
        "missing-asset_name",
        lambda b: without(b, "/compute_asset/assets/0/asset_name"),
        "/compute_asset/assets/0/asset_name",
        None,
    ),
    ("compute_asset-not-object", lambda b: with_(b, "/compute_asset", []), "/compute_asset", None),
    ("monitor_config-string", lambda b: with_(b, "/monitor_config", "x"), "/monitor_config", None),
    (
        "handler-not-string",
        lambda b: with_(b, "/compute_asset/handler", 1),
        "/compute_asset/handler",
        None,
    ),
    (
        "asset_value-not-string",
        lambda b: with_(b, "/compute_asset/assets/0/asset_value", 7),
        "/compute_asset/assets/0/asset_value",
        None,
    ),
    ("ttl-string", lambda b: with_(b, "/monitor_config/ttl", "1d"), "/monitor_config/ttl", None),
    (
        "store_payload-string",
        lambda b: with_(b, "/monitor_config/store_payload", "no"),
        "/monitor_config/store_payload",
        None,
    ),
    ("name-not-string", lambda b: with_(b, "/name", 12), "/name", None),
    ("name-blank", lambda b: with_(b, "/name", "   "), "/name", None),
    ("name-too-long", lambda b: with_(b, "/name", "n" * 257), "/name", None),
    ("name-nul", lambda b: with_(b, "/name", "a\x00b"), "/name", None),
    ("name-newline", lambda b: with_(b, "/name", "a\nb"), "/name", None),
    (
        "timeout-string",
        lambda b: with_(b, "/compute_asset/timeout", "30"),
        "/compute_asset/timeout",
        None,
    ),
    (
        "read_only_fs-string",
        lambda b: with_(b, "/compute_asset/read_only_fs", "yes"),
        "/compute_asset/read_only_fs",
        None,
    ),
    (
        "assets-not-list",
        lambda b: with_(b, "/compute_asset/assets", {"index.js": "x"}),
        "/compute_asset/assets",
        None,
    ),
    ("unknown-field", lambda b: with_(b, "/bogus", 1), "/bogus", "bogus"),
    (
        "unknown-nested-field",
        lambda b: with_(b, "/compute_asset/assets/0/colour", "red"),
        "/compute_asset/assets/0/colour",
        "colour",
    ),
    (
        "unknown-runtime",
        lambda b: with_(b, "/compute_asset/runtime", "ruby"),
        "/compute_asset/runtime",
        "ruby",
    ),
    ("collection-dot", _ct("a.b"), "/compute_asset/collection_topic", None),
    ("collection-star", _ct("a*"), "/compute_asset/collection_topic", None),
    ("collection-gt", _ct("a>"), "/compute_asset/collection_topic", None),
    ("collection-space", _ct("a b"), "/compute_asset/collection_topic", None),
    ("collection-65", _ct("c" * 65), "/compute_asset/collection_topic", None),
    ("collection-empty", _ct(""), "/compute_asset/collection_topic", None),
    ("collection-not-string", _ct(7), "/compute_asset/collection_topic", None),  # type: ignore[arg-type]
    (
        "base64-invalid",
        lambda b: with_(b, "/compute_asset/assets/0/asset_value", "aGVs!!bG8="),
        "/compute_asset/assets/0/asset_value",
        "base64",
    ),
    (
        "base64-bad-padding",
        lambda b: with_(b, "/compute_asset/assets/0/asset_value", "aGVsbG8"),
        "/compute_asset/assets/0/asset_value",
        "base64",
    ),
    ("asset-absolute", _asset_named("/etc/x"), "/compute_asset/assets/1/asset_name", None),
    ("asset-dotdot", _asset_named("../x.js"), "/compute_asset/assets/1/asset_name", None),
    ("asset-inner-dotdot", _asset_named("a/../x.js"), "/compute_asset/assets/1/asset_name", None),
    ("asset-dot", _asset_named("./x.js"), "/compute_asset/assets/1/asset_name", None),
    ("asset-nul", _asset_named("a\x00b.js"), "/compute_asset/assets/1/asset_name", None),
    ("asset-backslash", _asset_named("a\\b.js"), "/compute_asset/assets/1/asset_name", None),
    ("asset-empty-segment", _asset_named("a//b.js"), "/compute_asset/assets/1/asset_name", None),
    ("asset-trailing-slash", _asset_named("a/"), "/compute_asset/assets/1/asset_name", None),
    ("asset-empty-name", _asset_named(""), "/compute_asset/assets/1/asset_name", None),
    ("asset-repeated", _asset_named("index.js"), "/compute_asset/assets/1/asset_name", None),
    (
        "asset-file-and-dir",
        lambda b: add_asset(add_asset(b, "lib", "x"), "lib/a.js", "x"),
        "/compute_asset/assets/2/asset_name",
        None,
    ),
    (
        "assets-empty",
        lambda b: with_(b, "/compute_asset/assets", []),
        "/compute_asset/assets",
        None,
    ),
    (
        "archive-not-an-archive",
        lambda b: add_asset(b, "bundle.tgz", "plain text", asset_type="archive"),
        "/compute_asset/assets/1/asset_value",
        None,
    ),
    (
        "archive-and-link",
        lambda b: add_asset(b, "x", "index.js", asset_type="archive", link=True),
        "/compute_asset/assets/1/link",
        None,
    ),
    (
        "handler-file-missing",
        lambda b: with_(b, "/compute_asset/handler", "main.handler"),
        "/compute_asset/handler",
        "main.js",
    ),
    (
        "handler-file-missing-python",
        lambda b: with_(b, "/compute_asset/runtime", "python"),
        "/compute_asset/handler",
        "index.py",
    ),
    (
        "handler-is-a-directory",
        lambda b: with_(
            add_asset(b, "lib.js/x.js", NODE_OK), "/compute_asset/handler", "lib.handler"
        ),
        "/compute_asset/handler",
        "lib.js",
    ),
    (
        "handler-without-dot",
        lambda b: with_(b, "/compute_asset/handler", "index"),
        "/compute_asset/handler",
        None,
    ),
    (
        "handler-empty-export",
        lambda b: with_(b, "/compute_asset/handler", "index."),
        "/compute_asset/handler",
        None,
    ),
    (
        "handler-bad-export",
        lambda b: with_(b, "/compute_asset/handler", "index.1x"),
        "/compute_asset/handler",
        None,
    ),
    (
        "handler-escapes",
        lambda b: with_(b, "/compute_asset/handler", "../index.handler"),
        "/compute_asset/handler",
        None,
    ),
    (
        "schema-input-invalid",
        lambda b: with_(b, "/schema", {"input": {"type": "wat"}}),
        "/schema/input",
        None,
    ),
    (
        "schema-output-invalid",
        lambda b: with_(b, "/schema", {"output": {"type": "wat"}}),
        "/schema/output",
        None,
    ),
    (
        "schema-input-nested-invalid",
        lambda b: with_(b, "/schema", {"input": {"properties": {"a": {"minLength": -1}}}}),
        "/schema/input/properties/a",
        None,
    ),
    (
        "schema-input-not-object",
        lambda b: with_(b, "/schema", {"input": 42}),
        "/schema/input",
        None,
    ),
    ("schema-unknown-key", lambda b: with_(b, "/schema", {"inputs": {}}), "/schema/inputs", None),
    # A $ref must resolve inside the schema: never fetched, never left to fail on every invoke.
    (
        "schema-ref-dangling",
        lambda b: with_(b, "/schema", {"input": {"$ref": "#/$defs/gone"}}),
        "/schema/input/$ref",
        "#/$defs/gone",
    ),
    (
        "schema-ref-nested-dangling",
        lambda b: with_(b, "/schema", {"output": {"properties": {"a": {"$ref": "#/nowhere"}}}}),
        "/schema/output/properties/a/$ref",
        None,
    ),
    (
        "schema-ref-remote",
        lambda b: with_(b, "/schema", {"input": {"$ref": "http://127.0.0.1:9/schema.json"}}),
        "/schema/input/$ref",
        None,
    ),
    (
        "schema-ref-loop",
        lambda b: with_(b, "/schema", {"input": {"$ref": "#"}}),
        "/schema/input",
        "loop",
    ),
    (
        "schema-ref-loop-through-allOf",
        lambda b: with_(
            b,
            "/schema",
            {"input": {"$defs": {"a": {"allOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"}},
        ),
        "/schema/input/$defs/a",
        "loop",
    ),
    (
        "schema-nested-too-deep",
        lambda b: with_(b, "/schema", {"input": _deep_schema(300)}),
        "/schema/input",
        None,
    ),
    (
        "timeout-zero",
        lambda b: with_(b, "/compute_asset/timeout", 0),
        "/compute_asset/timeout",
        None,
    ),
    (
        "timeout-negative",
        lambda b: with_(b, "/compute_asset/timeout", -5),
        "/compute_asset/timeout",
        None,
    ),
    (
        "timeout-over-max",
        lambda b: with_(b, "/compute_asset/timeout", 900_001),
        "/compute_asset/timeout",
        None,
    ),
    ("ttl-zero", lambda b: with_(b, "/monitor_config/ttl", 0), "/monitor_config/ttl", None),
    ("ttl-negative", lambda b: with_(b, "/monitor_config/ttl", -1), "/monitor_config/ttl", None),
    ("size-100MB", lambda b: with_(b, "/size", "100MB"), "/size", "100MB"),
    ("size-lowercase", lambda b: with_(b, "/size", "256mb"), "/size", None),
    ("size-leading-zero", lambda b: with_(b, "/size", "0256MB"), "/size", None),
    ("size-number", lambda b: with_(b, "/size", 256), "/size", None),
    (
        "env-PATH",
        lambda b: with_(b, "/compute_asset/env_vars", ["PATH=/x"]),
        "/compute_asset/env_vars/0",
        "PATH",
    ),
    (
        "env-LD_PRELOAD",
        lambda b: with_(b, "/compute_asset/env_vars", ["LD_PRELOAD=/x"]),
        "/compute_asset/env_vars/0",
        "LD_PRELOAD",
    ),
    (
        "env-GCONV_PATH",
        lambda b: with_(b, "/compute_asset/env_vars", ["GCONV_PATH=/workspace"]),
        "/compute_asset/env_vars/0",
        "GCONV_PATH",
    ),
    (
        "env-LC_ALL",
        lambda b: with_(b, "/compute_asset/env_vars", ["OK=1", "LC_ALL=/workspace/loc"]),
        "/compute_asset/env_vars/1",
        "LC_ALL",
    ),
    (
        "env-no-equals",
        lambda b: with_(b, "/compute_asset/env_vars", ["NOEQUALS"]),
        "/compute_asset/env_vars/0",
        None,
    ),
    (
        "env-bad-name",
        lambda b: with_(b, "/compute_asset/env_vars", ["OK=1", "1X=2"]),
        "/compute_asset/env_vars/1",
        None,
    ),
    (
        "env-not-list",
        lambda b: with_(b, "/compute_asset/env_vars", "A=1"),
        "/compute_asset/env_vars",
        None,
    ),
]


@pytest.mark.parametrize(
    ("spoil", "path", "word"),
    [pytest.param(spoil, path, word, id=name) for name, spoil, path, word in BAD_INPUT],
)
async def test_bad_input_is_400_naming_the_field_and_stores_nothing(
    http: httpx.AsyncClient, nc: Client, spoil: Mutation, path: str, word: str | None
) -> None:
    ct = unique()
    good = function_body({"index.js": NODE_OK}, collection=ct, name="victim")
    everything = await total(http)
    bundles = await bundle_count(nc)

    error = assert_error(
        await http.post(CREATE, json=spoil(good)),
        400,
        "invalid_request",
        path,
        prefix=path.startswith("/schema/"),
    )
    if word is not None:
        assert word in error["error"], error

    assert await registry_keys(nc, ct) == []
    assert await total(http, ct) == 0
    assert await total(http) == everything
    assert await bundle_count(nc) == bundles
    # The name is still free: the correct body is created.
    fixed = await http.post(CREATE, json=good)
    assert fixed.status_code == 201, fixed.text


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b"", id="empty"),
        pytest.param(b"[]", id="array"),
        pytest.param(b'[{"name": "x"}]', id="array-of-object"),
        pytest.param(b'"a string"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b"\xff\xfe{}", id="not-utf8"),
    ],
)
async def test_body_that_is_not_a_json_object_is_400(http: httpx.AsyncClient, raw: bytes) -> None:
    everything = await total(http)
    response = await http.post(CREATE, content=raw, headers={"content-type": "application/json"})
    assert_error(response, 400, "invalid_request", "/")
    assert await total(http) == everything


async def test_body_over_the_limit_is_413(stack: Stack, nc: Client) -> None:
    ct = unique()
    async with second_api(stack, max_body_bytes=1024) as small:
        everything = await total(small)
        big = function_body({"index.js": NODE_OK + "//" + "x" * 2048}, collection=ct)
        assert_error(await small.post(CREATE, json=big), 413, "payload_too_large", "/")

        # Without a Content-Length (chunked) the limit holds while reading.
        async def chunks() -> AsyncIterator[bytes]:
            data = httpx.Request("POST", "/", json=big).content
            for i in range(0, len(data), 256):
                yield data[i : i + 256]

        assert_error(await small.post(CREATE, content=chunks()), 413, "payload_too_large", "/")
        assert await registry_keys(nc, ct) == []
        assert await total(small) == everything

        # A body under the limit goes through the same process.
        fine = await small.post(CREATE, json=function_body({"index.js": NODE_OK}, collection=ct))
        assert fine.status_code == 201, fine.text


async def test_bundle_over_the_limit_is_413(stack: Stack, nc: Client) -> None:
    ct = unique()
    async with second_api(stack, max_bundle_bytes=4096) as small:
        # Decoded assets over the limit: refused at the asset that passes it.
        body = function_body({"index.js": NODE_OK, "big.bin": b"x" * 5000}, collection=ct)
        assert_error(
            await small.post(CREATE, json=body),
            413,
            "payload_too_large",
            "/compute_asset/assets/1/asset_value",
        )
        # A small archive that unpacks past the limit (a zip bomb) is refused too.
        bomb = zip_bytes({"index.js": NODE_OK, "zeros.bin": b"\0" * 100_000})
        assert len(bomb) < 4096
        body = function_body({}, collection=ct)
        body["compute_asset"]["assets"] = [
            {"asset_name": "b.zip", "asset_type": "archive", "asset_value": b64(bomb)}
        ]
        assert_error(
            await small.post(CREATE, json=body),
            413,
            "payload_too_large",
            "/compute_asset/assets/0/asset_value",
        )
        assert await registry_keys(nc, ct) == []


async def test_schema_with_internal_refs_validates_invocations(http: httpx.AsyncClient) -> None:
    schema = {
        "input": {
            "$defs": {"count": {"type": "integer", "minimum": 0}},
            "type": "object",
            "properties": {"n": {"$ref": "#/$defs/count"}, "child": {"$ref": "#"}},
        },
        "output": {"$ref": "https://json-schema.org/draft/2020-12/schema"},
    }
    body = function_body(
        {"index.js": "exports.handler = async () => ({type: 'object'});"},
        collection=unique(),
        schema=schema,
    )
    response = await http.post(CREATE, json=body)
    assert response.status_code == 201, response.text
    assert response.json()["body"]["schema"] == schema
    path = f"{CREATE}/{body['compute_asset']['collection_topic']}/"
    path += response.json()["body"]["compute_asset"]["service"]
    good = await http.post(f"{path}/invoke", json={"payload": {"n": 1, "child": {"n": 2}}})
    assert good.status_code == 200, good.text
    bad = await http.post(f"{path}/invoke", json={"payload": {"n": 1, "child": {"n": -1}}})
    assert_error(bad, 400, "invalid_input", "/child/n")
