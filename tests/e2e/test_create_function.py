"""Creating functions over HTTP: the Quiva seed byte for byte, runtimes and defaults, names unique
per collection, content-addressed bundles."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import time

import httpx
from nats.aio.client import Client

from bus import subjects
from tests.e2e.bodies import (
    COMPUTE_ASSET_KEYS,
    CREATE,
    NODE_OK,
    PY_OK,
    SEED_BODY,
    SEED_RESPONSE,
    SERVICE,
    VIEW_KEYS,
    assert_error,
    bundle_count,
    registry_keys,
    total,
    unique,
    with_,
    without,
)
from tests.helpers import (
    Fn,
    b64,
    function_body,
    wait_for_record,
)

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
