"""Creating functions over HTTP (the Quiva seed, runtimes, archives, links, every bad input)
and the read-only function routes, against the real stack."""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import io
import json
import re
import tarfile
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx
import pytest
from nats.aio.client import Client

from bus import subjects
from bus.bundles import BundleStore
from tests.helpers import (
    Fn,
    MakeFunction,
    Stack,
    b64,
    function_body,
    second_api,
    wait_for_record,
)

CREATE = "/compute/functions"
NODE_OK = "exports.handler = async (event) => ({ got: event });"
PY_OK = "def handler(event, context):\n    return {'got': event}\n"

# The create body and 201 response of seeds/003_a64b588710bb425b.txt, verbatim.
SEED_BODY: dict[str, Any] = {
    "name": "my-function",
    "description": "A serverless function",
    "compute_asset": {
        "collection_topic": "my-namespace",
        "handler": "index.handler",
        "assets": [
            {
                "asset_name": "index.js",
                "asset_type": "file",
                "asset_value": "Y29uc29sZS5sb2coIkhlbGxvLCBXb3JsZCEiKTsK",
                "link": False,
            }
        ],
        "timeout": 30000,
        "read_only_fs": True,
    },
    "monitor_config": {"ttl": 604800000, "store_payload": True},
    "schema": {
        "input": {"type": "object", "properties": {"name": {"type": "string"}}},
        "output": {"type": "object", "properties": {"message": {"type": "string"}}},
    },
}
SEED_RESPONSE: dict[str, Any] = {
    "body": {
        "description": "A serverless function",
        "name": "my-function",
        "runtime": "nodejs",
        "subject": "ms.compute.my-namespace.function.123456789",
        "type": "created",
        "modified": 1714378974,
        "compute_asset": {
            "collection_topic": "my-namespace",
            "service": "123456789",
            "runtime": "nodejs",
            "handler": "index.handler",
            "timeout": 30000,
            "read_only_fs": True,
        },
        "monitor_config": {"ttl": 604800000, "store_payload": True},
        "schema": SEED_BODY["schema"],
    }
}
VIEW_KEYS = set(SEED_RESPONSE["body"])
COMPUTE_ASSET_KEYS = set(SEED_RESPONSE["body"]["compute_asset"])
SERVICE = re.compile(r"^[0-9]{9}$")


# ---- helpers ------------------------------------------------------------------------------------


def unique(prefix: str = "c") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def assert_error(
    response: httpx.Response, status: int, code: str, path: str, *, prefix: bool = False
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = response.json()
    assert set(error) == {"error", "code", "details"}, error
    assert error["code"] == code, error
    assert isinstance(error["error"], str) and error["error"], error
    assert error["details"], error
    where = error["details"][0]["path"]
    if prefix:
        assert where.startswith(path), error
    else:
        assert where == path, error
    return error


async def total(http: httpx.AsyncClient, ct: str | None = None) -> int:
    params = {"collection_topic": ct} if ct else {}
    response = await http.get(CREATE, params=params)
    assert response.status_code == 200, response.text
    count: int = response.json()["body"]["results_total"]
    return count


async def registry_keys(nc: Client, ct: str) -> list[str]:
    """Every live registry key (function, revision, name) of collection ``ct``."""
    kv = await nc.jetstream().key_value(subjects.FUNCTIONS_BUCKET)
    watcher = await kv.watch(f"*.{ct}.>", ignore_deletes=True, meta_only=True)
    keys = []
    try:
        while (entry := await watcher.updates(timeout=5)) is not None:  # type: ignore[no-untyped-call]
            keys.append(entry.key)
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
    return sorted(keys)


async def bundle_count(nc: Client) -> int:
    return len(await (await BundleStore.open(nc.jetstream())).digests())


def with_(body: dict[str, Any], pointer: str, value: Any) -> dict[str, Any]:
    """A copy of ``body`` with the value at the JSON pointer replaced (or added)."""
    out = copy.deepcopy(body)
    *parents, last = pointer.strip("/").split("/")
    node: Any = out
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return out


def without(body: dict[str, Any], pointer: str) -> dict[str, Any]:
    out = copy.deepcopy(body)
    *parents, last = pointer.strip("/").split("/")
    node: Any = out
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    del node[last]
    return out


def add_asset(body: dict[str, Any], name: str, data: str | bytes, **extra: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    out["compute_asset"]["assets"].append({"asset_name": name, "asset_value": b64(data), **extra})
    return out


def tar_gz(entries: Mapping[str, str | bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in entries.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
    return buffer.getvalue()


def zip_bytes(entries: Mapping[str, str | bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


# ---- the seed -----------------------------------------------------------------------------------


async def test_seed_body_creates_exactly_the_seed_response(
    http: httpx.AsyncClient, nc: Client
) -> None:
    events = await nc.subscribe("ms.compute.my-namespace.function.*.event.created")
    before = int(time.time())
    response = await http.post(CREATE, json=SEED_BODY)
    after = int(time.time())
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("application/json")
    envelope = response.json()
    assert set(envelope) == {"body"}
    created = envelope["body"]

    assert set(created) == VIEW_KEYS
    assert set(created["compute_asset"]) == COMPUTE_ASSET_KEYS
    service = created["compute_asset"]["service"]
    assert SERVICE.match(service), service
    expected = copy.deepcopy(SEED_RESPONSE["body"])
    expected["subject"] = f"ms.compute.my-namespace.function.{service}"
    expected["compute_asset"]["service"] = service
    expected["modified"] = created["modified"]
    assert created == expected
    assert before <= created["modified"] <= after
    assert created["type"] == "created"
    assert created["runtime"] == created["compute_asset"]["runtime"] == "nodejs"

    # The lifecycle event carries the same record.
    event = await events.next_msg(timeout=5)
    await events.unsubscribe()
    assert event.subject == f"{created['subject']}.event.created"
    assert httpx.Response(200, content=event.data).json() == created

    # index.js only logs: invoking answers handler_not_found naming the file and the export,
    # and the module's log line is in the monitor record.
    fn = Fn("my-namespace", service, SEED_BODY)
    invoked = await http.post(f"{fn.path}/invoke", json={"payload": {"name": "world"}})
    assert invoked.status_code == 500, invoked.text
    error = invoked.json()
    assert error["code"] == "handler_not_found", error
    assert "index.js" in error["error"] and "handler" in error["error"], error
    record = await wait_for_record(http, fn, invoked.headers["x-invocation-id"])
    assert record["status"] == "failed"
    assert record["error_code"] == "handler_not_found"
    assert "Hello, World!" in record["logs"]

    # And it reads back with its asset byte for byte.
    shown = (await http.get(fn.path)).json()["body"]
    assert shown["compute_asset"]["assets"] == SEED_BODY["compute_asset"]["assets"]
    assert shown["name"] == "my-function"
    assert shown["subject"] == created["subject"]


async def test_python_runtime_is_reported(http: httpx.AsyncClient) -> None:
    body = function_body({"index.py": PY_OK}, runtime="python", collection=unique())
    response = await http.post(CREATE, json=body)
    assert response.status_code == 201, response.text
    created = response.json()["body"]
    assert set(created) == VIEW_KEYS
    assert created["runtime"] == created["compute_asset"]["runtime"] == "python"
    fn = Fn(body["compute_asset"]["collection_topic"], created["compute_asset"]["service"], body)
    invoked = await http.post(f"{fn.path}/invoke", json={"payload": {"x": 1}})
    assert invoked.status_code == 200, invoked.text
    assert invoked.json() == {"body": {"got": {"x": 1}}}


async def test_runtime_defaults_to_nodejs(http: httpx.AsyncClient) -> None:
    body = without(
        function_body({"index.js": NODE_OK}, collection=unique()), "/compute_asset/runtime"
    )
    response = await http.post(CREATE, json=body)
    assert response.status_code == 201, response.text
    assert response.json()["body"]["runtime"] == "nodejs"


async def test_optional_fields_take_their_defaults(http: httpx.AsyncClient) -> None:
    ct = unique()
    body = {
        "name": "minimal",
        "compute_asset": {
            "collection_topic": ct,
            "handler": "index.handler",
            "assets": [{"asset_name": "index.js", "asset_value": b64(NODE_OK)}],
        },
        "monitor_config": {},
    }
    response = await http.post(CREATE, json=body)
    assert response.status_code == 201, response.text
    created = response.json()["body"]
    assert created["description"] == ""
    assert created["compute_asset"]["timeout"] == 30000
    assert created["compute_asset"]["read_only_fs"] is True
    assert created["monitor_config"] == {"ttl": 604800000, "store_payload": False}
    assert created["schema"] == {"input": None, "output": None}
    shown = (await http.get(f"{CREATE}/{ct}/{created['compute_asset']['service']}")).json()
    assert shown["body"]["size"] == "256MB"
    assert shown["body"]["compute_asset"]["env_vars"] == []


# ---- names are unique per collection ----------------------------------------------------------


async def test_same_name_twice_in_a_collection_is_409(http: httpx.AsyncClient, nc: Client) -> None:
    ct, other = unique(), unique()
    body = function_body({"index.js": NODE_OK}, collection=ct, name="twice")
    first = await http.post(CREATE, json=body)
    assert first.status_code == 201, first.text
    keys = await registry_keys(nc, ct)
    bundles = await bundle_count(nc)

    # Different code, same name: refused, and neither its revision nor its bundle is kept.
    again = function_body({"index.js": NODE_OK + "\n// v2"}, collection=ct, name="twice")
    assert_error(await http.post(CREATE, json=again), 409, "function_exists", "/name")
    assert await total(http, ct) == 1
    assert await registry_keys(nc, ct) == keys
    assert await bundle_count(nc) == bundles

    # The same name in another collection is a different function.
    elsewhere = await http.post(CREATE, json=with_(body, "/compute_asset/collection_topic", other))
    assert elsewhere.status_code == 201, elsewhere.text
    assert (
        elsewhere.json()["body"]["compute_asset"]["service"]
        != (first.json()["body"]["compute_asset"]["service"])
    )
    assert await total(http, ct) == 1
    assert await total(http, other) == 1


async def test_concurrent_creates_of_one_name_make_one_function(
    http: httpx.AsyncClient, nc: Client
) -> None:
    ct = unique()
    bodies = [
        function_body({"index.js": f"{NODE_OK}\n// {i}"}, collection=ct, name="race")
        for i in range(6)
    ]
    bundles = await bundle_count(nc)
    responses = await asyncio.gather(*(http.post(CREATE, json=b) for b in bodies))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409, 409, 409, 409, 409], [r.text for r in responses]
    assert await total(http, ct) == 1
    keys = await registry_keys(nc, ct)
    assert [k.split(".")[0] for k in keys] == ["fn", "name", "rev"], keys
    # Only the winner's bundle is stored: the losers stored nothing.
    assert await bundle_count(nc) == bundles + 1


async def test_bundles_are_content_addressed(http: httpx.AsyncClient, nc: Client) -> None:
    ct = unique()
    files = {"index.js": NODE_OK + "\n// content-addressed " + ct}
    bundles = await bundle_count(nc)
    first = await http.post(CREATE, json=function_body(files, collection=ct))
    second = await http.post(CREATE, json=function_body(files, collection=ct))
    assert first.status_code == second.status_code == 201
    assert await bundle_count(nc) == bundles + 1  # the same files are stored once

    kv = await nc.jetstream().key_value(subjects.FUNCTIONS_BUCKET)
    digests = set()
    for created in (first, second):
        service = created.json()["body"]["compute_asset"]["service"]
        entry = await kv.get(subjects.revision_key(ct, service, 1))
        revision = json.loads(entry.value or b"{}")
        digests.add(revision["bundle"])
    (digest,) = digests
    store = await nc.jetstream().object_store(subjects.BUNDLES_BUCKET)
    stored = await store.get(digest)
    assert hashlib.sha256(stored.data or b"").hexdigest() == digest


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


# ---- archives and links -------------------------------------------------------------------------

UTIL_JS = "exports.add = (a, b) => a + b;\n"
INDEX_JS = (
    "const util = require('./lib/util');\n"
    "exports.handler = async (event) => ({ sum: util.add(event.a, event.b) });\n"
)


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
async def test_archive_asset_is_unpacked_and_runs(
    http: httpx.AsyncClient, make_function: MakeFunction, kind: str
) -> None:
    entries = {"index.js": INDEX_JS, "lib/util.js": UTIL_JS}
    data = tar_gz(entries) if kind == "tar.gz" else zip_bytes(entries)
    body = function_body({}, collection=unique())
    body["compute_asset"]["assets"] = [
        {"asset_name": f"bundle.{kind}", "asset_type": "archive", "asset_value": b64(data)}
    ]
    response = await http.post(CREATE, json=body)
    assert response.status_code == 201, response.text
    fn = Fn(
        body["compute_asset"]["collection_topic"],
        response.json()["body"]["compute_asset"]["service"],
        body,
    )
    invoked = await http.post(f"{fn.path}/invoke", json={"payload": {"a": 2, "b": 3}})
    assert invoked.status_code == 200, invoked.text
    assert invoked.json() == {"body": {"sum": 5}}
    # The archive reads back as it was sent, not unpacked.
    shown = (await http.get(fn.path)).json()["body"]["compute_asset"]["assets"]
    assert shown == [{**body["compute_asset"]["assets"][0], "link": False}]


async def test_archive_inside_a_folder_unpacks_there(http: httpx.AsyncClient) -> None:
    body = function_body(
        {"index.js": "exports.handler = require('./vendor/lib/util').handler;"}, collection=unique()
    )
    lib = tar_gz({"lib/util.js": "exports.handler = async () => 'vendored';"})
    body = add_asset(body, "vendor/lib.tar.gz", lib, asset_type="archive")
    response = await http.post(CREATE, json=body)
    assert response.status_code == 201, response.text
    service = response.json()["body"]["compute_asset"]["service"]
    invoked = await http.post(
        f"{CREATE}/{body['compute_asset']['collection_topic']}/{service}/invoke", json={}
    )
    assert invoked.status_code == 200, invoked.text
    assert invoked.json() == {"body": "vendored"}


BAD_ARCHIVES: list[tuple[str, Callable[[], bytes]]] = [
    ("tar-dotdot", lambda: tar_gz({"index.js": NODE_OK, "../evil": "x"})),
    ("tar-inner-dotdot", lambda: tar_gz({"index.js": NODE_OK, "lib/../../evil": "x"})),
    ("tar-absolute", lambda: tar_gz({"index.js": NODE_OK, "/tmp/evil": "x"})),
    ("tar-link-outside", lambda: tar_gz({"index.js": NODE_OK}, {"evil": "../../etc/passwd"})),
    ("tar-link-absolute", lambda: tar_gz({"index.js": NODE_OK}, {"evil": "/etc/passwd"})),
    ("zip-dotdot", lambda: zip_bytes({"index.js": NODE_OK, "../evil": "x"})),
    ("zip-absolute", lambda: zip_bytes({"index.js": NODE_OK, "/tmp/evil": "x"})),
    ("corrupt-gzip", lambda: b"\x1f\x8b" + b"\x00" * 40),
    ("corrupt-zip", lambda: b"PK\x03\x04" + b"\x00" * 40),
    ("tar-duplicate", lambda: tar_gz({"index.js": NODE_OK, "./index.js": NODE_OK})),
]


@pytest.mark.parametrize("make", [pytest.param(make, id=name) for name, make in BAD_ARCHIVES])
async def test_unsafe_archive_is_400(
    http: httpx.AsyncClient, nc: Client, make: Callable[[], bytes]
) -> None:
    ct = unique()
    body = function_body({}, collection=ct)
    body["compute_asset"]["assets"] = [
        {"asset_name": "bundle", "asset_type": "archive", "asset_value": b64(make())}
    ]
    assert_error(
        await http.post(CREATE, json=body),
        400,
        "invalid_request",
        "/compute_asset/assets/0/asset_value",
    )
    assert await registry_keys(nc, ct) == []


async def test_link_inside_the_bundle_reaches_the_handler(http: httpx.AsyncClient) -> None:
    body = function_body(
        {
            "src/real.js": "const h = require('./helper');\nexports.handler = async () => h.v;",
            "src/helper.js": "exports.v = 'through the link';",
        },
        collection=unique(),
    )
    body = add_asset(body, "index.js", "src/real.js", link=True)
    response = await http.post(CREATE, json=body)
    assert response.status_code == 201, response.text
    service = response.json()["body"]["compute_asset"]["service"]
    path = f"{CREATE}/{body['compute_asset']['collection_topic']}/{service}"
    invoked = await http.post(f"{path}/invoke", json={"payload": {}})
    assert invoked.status_code == 200, invoked.text
    assert invoked.json() == {"body": "through the link"}
    # The link reads back as a link, its value the target.
    assets = (await http.get(path)).json()["body"]["compute_asset"]["assets"]
    assert assets[2] == {
        "asset_name": "index.js",
        "asset_type": "file",
        "asset_value": b64("src/real.js"),
        "link": True,
    }


async def test_link_to_a_folder_inside_the_bundle_works(http: httpx.AsyncClient) -> None:
    body = function_body(
        {"real/index.js": NODE_OK}, collection=unique(), handler="app/index.handler"
    )
    body = add_asset(body, "app", "real", link=True)
    response = await http.post(CREATE, json=body)
    assert response.status_code == 201, response.text


BAD_LINKS: list[tuple[str, list[tuple[str, str, bool]], str]] = [
    # (id, extra assets (name, value, link), the failing path)
    ("outside", [("index.js", "../../etc/passwd", True)], "/compute_asset/assets/1/asset_value"),
    ("absolute", [("index.js", "/etc/passwd", True)], "/compute_asset/assets/1/asset_value"),
    (
        "nested-outside",
        [("a/b/index.js", "../../../x", True)],
        "/compute_asset/assets/1/asset_value",
    ),
    ("empty-target", [("index.js", "", True)], "/compute_asset/assets/1/asset_value"),
    # Each link is fine on its own; followed together they leave the bundle.
    (
        "chain-outside",
        [("a/up", "..", True), ("a/out", "up/..", True)],
        "/compute_asset/assets/2/asset_value",
    ),
]


@pytest.mark.parametrize(
    ("extra", "path"), [pytest.param(extra, path, id=name) for name, extra, path in BAD_LINKS]
)
async def test_link_leaving_the_bundle_is_400(
    http: httpx.AsyncClient, nc: Client, extra: list[tuple[str, str, bool]], path: str
) -> None:
    ct = unique()
    body = function_body({"real.js": NODE_OK}, collection=ct, handler="real.handler")
    for name, value, link in extra:
        body = add_asset(body, name, value, link=link)
    assert_error(await http.post(CREATE, json=body), 400, "invalid_request", path)
    assert await registry_keys(nc, ct) == []


async def test_dangling_link_as_handler_is_400(http: httpx.AsyncClient) -> None:
    body = function_body({"real.js": NODE_OK}, collection=unique())
    body = add_asset(body, "index.js", "missing.js", link=True)
    error = assert_error(
        await http.post(CREATE, json=body), 400, "invalid_request", "/compute_asset/handler"
    )
    assert "index.js" in error["error"]


# ---- read routes --------------------------------------------------------------------------------


async def test_get_function_returns_it_with_its_assets(http: httpx.AsyncClient) -> None:
    ct = unique()
    binary = bytes(range(256)) * 3
    body = function_body(
        {"index.js": NODE_OK, "data/blob.bin": binary, "empty.txt": ""},
        collection=ct,
        name="readable",
        description="shown back",
        size="512MB",
        timeout=1234,
        schema={"input": {"type": "object"}},
    )
    body["compute_asset"]["env_vars"] = ["GREETING=hi=there", "EMPTY="]
    body["compute_asset"]["read_only_fs"] = False
    created = (await http.post(CREATE, json=body)).json()["body"]
    service = created["compute_asset"]["service"]

    response = await http.get(f"{CREATE}/{ct}/{service}")
    assert response.status_code == 200, response.text
    shown = response.json()["body"]
    assert shown["type"] == "function"
    assert shown["name"] == "readable"
    assert shown["description"] == "shown back"
    assert shown["subject"] == f"ms.compute.{ct}.function.{service}"
    assert shown["size"] == "512MB"
    assert shown["revision"] == 1
    assert shown["aliases"] == {"production": 1}
    assert shown["created"] == shown["modified"] == created["modified"]
    assert shown["schema"] == {"input": {"type": "object"}, "output": None}
    ca = shown["compute_asset"]
    assert ca["env_vars"] == ["GREETING=hi=there", "EMPTY="]
    assert ca["timeout"] == 1234
    assert ca["read_only_fs"] is False
    assert ca["service"] == service
    sent = {a["asset_name"]: a["asset_value"] for a in body["compute_asset"]["assets"]}
    got = {a["asset_name"]: a["asset_value"] for a in ca["assets"]}
    assert got == sent
    assert [a["asset_name"] for a in ca["assets"]] == list(sent)
    assert base64.b64decode(got["data/blob.bin"]) == binary
    assert all(a["asset_type"] == "file" and a["link"] is False for a in ca["assets"])


async def test_list_functions_filters_and_pages(http: httpx.AsyncClient) -> None:
    ct, other = unique(), unique()
    made = []
    for i in range(3):
        body = function_body({"index.js": NODE_OK}, collection=ct, name=f"f{i}")
        made.append((await http.post(CREATE, json=body)).json()["body"]["compute_asset"]["service"])
    await http.post(CREATE, json=function_body({"index.js": NODE_OK}, collection=other))

    page = (await http.get(CREATE, params={"collection_topic": ct})).json()["body"]
    assert page["results_total"] == 3
    assert {f["compute_asset"]["service"] for f in page["results"]} == set(made)
    for item in page["results"]:
        assert set(item) == VIEW_KEYS
        assert set(item["compute_asset"]) == COMPUTE_ASSET_KEYS
        assert item["type"] == "function"
        assert item["compute_asset"]["collection_topic"] == ct
    order = [f["compute_asset"]["service"] for f in page["results"]]

    seen = []
    for offset in range(3):
        one = (
            await http.get(CREATE, params={"collection_topic": ct, "limit": 1, "offset": offset})
        ).json()["body"]
        assert one["results_total"] == 3
        assert len(one["results"]) == 1
        seen.append(one["results"][0]["compute_asset"]["service"])
    assert seen == order
    two = (await http.get(CREATE, params={"collection_topic": ct, "limit": 2, "offset": 2})).json()[
        "body"
    ]
    assert (len(two["results"]), two["results_total"]) == (1, 3)
    past = (await http.get(CREATE, params={"collection_topic": ct, "offset": 10})).json()["body"]
    assert past == {"results": [], "results_total": 3}

    everything = (await http.get(CREATE, params={"limit": 1000})).json()["body"]
    services = {f["compute_asset"]["service"] for f in everything["results"]}
    assert set(made) <= services
    assert everything["results_total"] >= 4

    empty = (await http.get(CREATE, params={"collection_topic": unique()})).json()["body"]
    assert empty == {"results": [], "results_total": 0}


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"collection_topic": "a.b"}, "?collection_topic"),
        ({"collection_topic": "a" * 65}, "?collection_topic"),
        ({"limit": "0"}, "?limit"),
        ({"limit": "1001"}, "?limit"),
        ({"limit": "ten"}, "?limit"),
        ({"offset": "-1"}, "?offset"),
    ],
)
async def test_list_functions_refuses_bad_query(
    http: httpx.AsyncClient, params: dict[str, str], path: str
) -> None:
    assert_error(await http.get(CREATE, params=params), 400, "invalid_request", path)


async def test_collections_count_their_functions(http: httpx.AsyncClient) -> None:
    ct, other = unique("a"), unique("b")
    for _ in range(2):
        await http.post(CREATE, json=function_body({"index.js": NODE_OK}, collection=ct))
    await http.post(CREATE, json=function_body({"index.js": NODE_OK}, collection=other))

    listed = (await http.get("/compute/collections")).json()["body"]
    counts = {c["collection_topic"]: c["functions"] for c in listed["results"]}
    assert counts[ct] == 2 and counts[other] == 1
    assert listed["results_total"] == len(listed["results"])
    names = [c["collection_topic"] for c in listed["results"]]
    assert names == sorted(names)

    inside = (await http.get(f"/compute/collections/{ct}/functions")).json()["body"]
    assert inside["results_total"] == 2
    assert {f["compute_asset"]["collection_topic"] for f in inside["results"]} == {ct}
    paged = (await http.get(f"/compute/collections/{ct}/functions?limit=1")).json()["body"]
    assert (len(paged["results"]), paged["results_total"]) == (1, 2)
    none = (await http.get(f"/compute/collections/{unique()}/functions")).json()["body"]
    assert none == {"results": [], "results_total": 0}
    assert_error(
        await http.get("/compute/collections/a.b/functions"),
        400,
        "invalid_request",
        "collection_topic",
    )


async def test_unknown_function_is_404(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function({"index.js": NODE_OK}, collection=unique())
    other = "100000000" if fn.service != "100000000" else "100000001"
    for path in (
        f"/compute/functions/{fn.collection}/{other}",
        f"/compute/functions/{unique()}/{fn.service}",
        f"/compute/functions/{fn.collection}/abc",
        f"/compute/functions/{fn.collection}/1234567890",
    ):
        response = await http.get(path)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["code"] == "function_not_found"


async def test_bad_collection_in_path_is_400(http: httpx.AsyncClient) -> None:
    for ct in ("a.b", "a*", "a%3E", "a%20b", "c" * 65):
        assert_error(
            await http.get(f"/compute/functions/{ct}/123456789"),
            400,
            "invalid_request",
            "collection_topic",
        )


async def test_unknown_route_and_method(http: httpx.AsyncClient) -> None:
    response = await http.get("/compute/nothing-here")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    response = await http.put(CREATE, json={})
    assert response.status_code == 405
    assert set(response.json()) == {"error", "code", "details"}


# ---- operator routes ----------------------------------------------------------------------------


# ---- nothing lives only in API memory ---------------------------------------------------------


async def test_a_new_api_process_knows_every_function(
    stack: Stack, http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function(
        {"index.js": NODE_OK, "lib/x.txt": "kept"}, collection=unique(), name="survivor"
    )
    before = (await http.get(fn.path)).json()
    async with second_api(stack) as fresh:
        after = await fresh.get(fn.path)
        assert after.status_code == 200, after.text
        assert after.json() == before
        listed = (await fresh.get(CREATE, params={"collection_topic": fn.collection})).json()
        assert listed["body"]["results_total"] == 1
        invoked = await fresh.post(f"{fn.path}/invoke", json={"payload": '"hi"'})
        assert invoked.status_code == 200, invoked.text
        assert invoked.json() == {"body": {"got": "hi"}}
        # The name is taken for the new process too.
        again = await fresh.post(CREATE, json=fn.body)
        assert_error(again, 409, "function_exists", "/name")
