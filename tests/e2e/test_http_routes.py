"""HTTP routes (``type: "http"`` triggers) against the real stack: real requests through ``/r/``
to real Node and Python handlers; the event, the response mapping, tokens, longest prefix,
weighted traffic, limits, switching off and on, events, and every bad input."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any

import httpx
import pytest
from nats.aio.client import Client

from bus.triggers import TriggerStore
from executor.functions.triggers import new_trigger_id, pick_revision
from schemas.triggers import FunctionTarget, HttpTrigger
from tests.helpers import Fn, MakeFunction, Stack, b64, second_api, wait_for_record

ECHO = {"index.js": "exports.handler = async (event) => event;\n"}
NAMED = "exports.handler = async () => ({{ v: {v} }});\n"


def unique() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


async def route(
    http: httpx.AsyncClient, fn: Fn, path: str, method: str = "POST", **more: Any
) -> dict[str, Any]:
    target = {"collection_topic": fn.collection, "service": fn.service}
    body = {"type": "http", "method": method, "path": path, "function": target, **more}
    answer = await http.post("/compute/triggers", json=body)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()["body"]
    return created


async def token(http: httpx.AsyncClient, *scopes: str) -> dict[str, str]:
    answer = await http.post("/compute/tokens", json={"name": unique(), "scopes": list(scopes)})
    assert answer.status_code == 201, answer.text
    return {"Authorization": f"Bearer {answer.json()['body']['token']}"}


async def test_the_event_is_a_function_url_event_and_a_plain_result_is_json(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function(ECHO)
    base = f"/{unique()}/hooks"
    await route(http, fn, base)
    answer = await http.post(
        f"/r{base}/push?a=1&a=2&b=",
        content=b'{"ref": "main"}',
        headers={"Content-Type": "application/json", "X-GitHub-Event": "push", "Cookie": "k=v"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["x-compute-revision"] == "1" and answer.headers["x-invocation-id"]
    event = answer.json()
    assert event["version"] == "2.0"
    assert event["rawPath"] == f"{base}/push"
    assert event["rawQueryString"] == "a=1&a=2&b="
    assert event["queryStringParameters"] == {"a": "1,2", "b": ""}
    assert event["headers"]["x-github-event"] == "push"
    assert "authorization" not in event["headers"]  # computebus's token stays out of the event
    assert event["cookies"] == ["k=v"]
    http_part = event["requestContext"]["http"]
    assert http_part["method"] == "POST" and http_part["path"] == f"{base}/push"
    assert http_part["sourceIp"] == "127.0.0.1"
    assert http_part["userAgent"].startswith("python-httpx")
    assert event["requestContext"]["requestId"] == answer.headers["x-invocation-id"]
    assert event["body"] == '{"ref": "main"}' and event["isBase64Encoded"] is False

    binary = await http.post(
        f"/r{base}", content=b"\x00\xffbin", headers={"Content-Type": "application/octet-stream"}
    )
    assert binary.json()["isBase64Encoded"] is True
    assert base64.b64decode(binary.json()["body"]) == b"\x00\xffbin"
    escaped = await http.get(f"/r{base}/a%20b", headers={"X": "1"})
    assert escaped.status_code == 404  # a POST route
    assert (await http.post(f"/r{base}/a%20b")).json()["rawPath"] == f"{base}/a%20b"


PY_RESPONSE = """
import base64

def handler(event, context):
    if event["rawPath"].endswith("/png"):
        return {"statusCode": 201, "headers": {"Content-Type": "image/png", "X-Made": 1},
                "body": base64.b64encode(b"\\x89PNG\\x00").decode(), "isBase64Encoded": True,
                "cookies": ["a=1; Path=/", "b=2"]}
    if event["rawPath"].endswith("/bad"):
        return {"statusCode": 9000}
    if event["rawPath"].endswith("/raise"):
        raise ValueError("no")
    return {"statusCode": 302, "headers": {"location": "/elsewhere"}}
"""


async def test_a_status_code_result_is_the_http_response(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function({"index.py": PY_RESPONSE}, runtime="python")
    base = f"/{unique()}"
    await route(http, fn, base, method="ANY")
    png = await http.get(f"/r{base}/png")
    assert png.status_code == 201, png.text
    assert png.content == b"\x89PNG\x00"
    assert png.headers["content-type"] == "image/png" and png.headers["x-made"] == "1"
    assert png.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2"]
    moved = await http.delete(f"/r{base}/go")
    assert moved.status_code == 302 and moved.headers["location"] == "/elsewhere"
    assert moved.content == b""
    bad = await http.get(f"/r{base}/bad")
    assert bad.status_code == 502 and bad.json()["code"] == "invalid_output", bad.text
    raised = await http.get(f"/r{base}/raise")
    assert raised.status_code == 500 and raised.json()["code"] == "function_error"
    assert raised.headers["x-invocation-id"]


async def test_public_routes_take_no_token_and_others_the_invoke_scope(
    stack: Stack, http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    ct = unique()
    fn = await make_function(ECHO, collection=ct)
    open_path, closed_path = f"/{unique()}", f"/{unique()}"
    await route(http, fn, open_path, public=True)
    await route(http, fn, closed_path)
    async with httpx.AsyncClient(base_url=stack.api, timeout=30) as anyone:
        opened = await anyone.post(f"/r{open_path}", headers={"Authorization": "Bearer theirs"})
        assert opened.status_code == 200, opened.text
        # The sender's own Authorization reaches the handler on a public route.
        assert opened.json()["headers"]["authorization"] == "Bearer theirs"
        assert (await anyone.post(f"/r{closed_path}")).status_code == 401
        reader = await anyone.post(f"/r{closed_path}", headers=await token(http, f"read:{ct}"))
        assert reader.status_code == 403, reader.text
        stranger = await anyone.post(f"/r{closed_path}", headers=await token(http, "invoke:else"))
        assert stranger.status_code == 404, stranger.text
        invoker = await anyone.post(f"/r{closed_path}", headers=await token(http, f"invoke:{ct}"))
        assert invoker.status_code == 200, invoker.text


async def test_the_longest_matching_route_of_the_method_serves(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    outer = await make_function({"index.js": NAMED.format(v='"outer"')})
    inner = await make_function({"index.js": NAMED.format(v='"inner"')})
    base = f"/{unique()}"
    await route(http, outer, base)
    await route(http, inner, f"{base}/deep")
    await route(http, inner, base, method="GET")

    async def served(method: str, path: str) -> str | int:
        answer = await http.request(method, f"/r{path}")
        return answer.json()["v"] if answer.status_code == 200 else answer.status_code

    assert await served("POST", base) == "outer"
    assert await served("POST", f"{base}/") == "outer"
    assert await served("POST", f"{base}/other/x") == "outer"
    assert await served("POST", f"{base}/deep") == "inner"
    assert await served("POST", f"{base}/deep/more") == "inner"
    assert await served("GET", f"{base}/deep") == "inner"  # the GET route at base
    assert await served("POST", f"{base}x") == 404
    assert await served("PUT", base) == 404


async def test_traffic_splits_across_revisions_by_weight(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function({"index.js": NAMED.format(v=1)})
    staged = await http.patch(
        f"/compute/compute-assets/{fn.collection}/{fn.service}",
        params={"promote": "false"},
        json={"assets": [{"asset_name": "index.js", "asset_value": b64(NAMED.format(v=2))}]},
    )
    assert staged.status_code == 200, staged.text
    traffic = {"1": 70, "2": 30}
    base = f"/{unique()}"
    await route(http, fn, base, traffic=traffic)
    seen: dict[int, int] = {1: 0, 2: 0}

    async def one() -> str:
        answer = await http.post(f"/r{base}")
        assert answer.status_code == 200, answer.text
        revision = int(answer.headers["x-compute-revision"])
        invocation_id = answer.headers["x-invocation-id"]
        # The choice follows from the invocation id, so every one is checked exactly...
        assert revision == pick_revision(traffic, invocation_id) == answer.json()["v"]
        seen[revision] += 1
        return invocation_id

    ids: list[str] = []
    for _ in range(20):
        ids += await asyncio.gather(*(one() for _ in range(10)))
    # ...and the ids are random, so over 200 the split is near 70/30: 140 +- 40 is beyond
    # 6 standard deviations (6.5 each), false alarms about once in a billion runs.
    assert 100 <= seen[1] <= 180 and seen[1] + seen[2] == 200, seen
    record = await wait_for_record(http, fn, ids[0])
    assert record["revision"] == pick_revision(traffic, ids[0])


async def test_limits_and_timeout_apply_to_the_route(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    slow = "exports.handler = async (e) => { await new Promise(r => setTimeout(r, 3000)); };\n"
    fn = await make_function({"index.js": slow}, timeout=10_000)
    base = f"/{unique()}"
    await route(http, fn, base, timeout=300)
    timed_out = await http.post(f"/r{base}")
    assert timed_out.status_code == 504 and timed_out.json()["code"] == "timeout", timed_out.text
    echo = await make_function(ECHO)
    limited = f"/{unique()}"
    await route(http, echo, limited, limits={"rps": 0.1, "burst": 1})
    assert (await http.post(f"/r{limited}")).status_code == 200
    refused = await http.post(f"/r{limited}")
    assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1


async def test_a_route_is_listed_switched_off_and_on_and_deleted_with_events(
    http: httpx.AsyncClient, nc: Client, make_function: MakeFunction
) -> None:
    ct = unique()
    fn = await make_function(ECHO, collection=ct)
    events = await nc.subscribe(f"{fn.subject}.event.updated")
    base = f"/{unique()}"
    created = await route(http, fn, base)
    assert created["id"].startswith("trg_") and created["enabled"] is True
    assert created["function"] == {"collection_topic": ct, "service": fn.service}
    event = json.loads((await events.next_msg(timeout=5)).data)
    assert event["type"] == "updated" and [t["id"] for t in event["triggers"]] == [created["id"]]

    shown = (await http.get(fn.path)).json()["body"]
    assert [t["path"] for t in shown["triggers"]] == [base]
    listed = (await http.get("/compute/triggers", params={"collection_topic": ct})).json()
    assert [t["id"] for t in listed["body"]["results"]] == [created["id"]]
    other = await token(http, "read:elsewhere")
    hidden = await http.get("/compute/triggers", headers=other)
    assert created["id"] not in [t["id"] for t in hidden.json()["body"]["results"]]
    assert (await http.get(f"/compute/triggers/{created['id']}", headers=other)).status_code == 404
    reader = await token(http, f"read:{ct}")
    assert (await http.get(f"/compute/triggers/{created['id']}", headers=reader)).status_code == 200
    forbidden = await http.delete(f"/compute/triggers/{created['id']}", headers=reader)
    assert forbidden.status_code == 403

    where = f"/compute/triggers/{created['id']}"
    off = await http.patch(where, json={"enabled": False})
    assert off.status_code == 200 and off.json()["body"]["enabled"] is False
    assert json.loads((await events.next_msg(timeout=5)).data)["triggers"][0]["enabled"] is False
    assert (await http.post(f"/r{base}")).status_code == 404
    await http.patch(where, json={"enabled": True})
    assert json.loads((await events.next_msg(timeout=5)).data)["triggers"][0]["enabled"] is True
    assert (await http.post(f"/r{base}")).status_code == 200
    assert (await http.delete(where)).status_code == 200
    assert json.loads((await events.next_msg(timeout=5)).data)["triggers"] == []
    assert (await http.post(f"/r{base}")).status_code == 404
    assert (await http.get(where)).status_code == 404
    await events.unsubscribe()


async def test_deleting_the_function_deletes_its_routes(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function(ECHO)
    base = f"/{unique()}"
    created = await route(http, fn, base)
    assert (await http.delete(fn.path)).status_code == 200
    gone = await http.post(f"/r{base}")
    assert gone.status_code == 404 and gone.json()["code"] == "not_found"
    assert (await http.get(f"/compute/triggers/{created['id']}")).status_code == 404
    await route(http, await make_function(ECHO), base)  # the path is free again


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"path": "/a/../b"}, "/path"),
        ({"path": "/a/./b"}, "/path"),
        ({"path": "hooks"}, "/path"),
        ({"path": "/a b"}, "/path"),
        ({"path": "/a%2e%2e"}, "/path"),
        ({"path": "/a//b"}, "/path"),
        ({"method": "FETCH"}, "/method"),
        ({"traffic": {"1": 90}}, "/traffic"),
        ({"traffic": {"1": 90, "7": 10}}, "/traffic/7"),
        ({"traffic": {"one": 100}}, "/traffic/one"),
        ({"timeout": 999_999}, "/timeout"),
        ({"limits": {"rps": 0}}, "/limits/rps"),
        ({"public": "yes"}, "/public"),
    ],
)
async def test_a_bad_route_is_400_naming_the_field(
    http: httpx.AsyncClient, make_function: MakeFunction, change: dict[str, Any], field: str
) -> None:
    fn = await _shared_function(make_function)
    body = {
        "type": "http",
        "method": "POST",
        "path": f"/{unique()}",
        "function": {"collection_topic": fn.collection, "service": fn.service},
        **change,
    }
    answer = await http.post("/compute/triggers", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["details"][0]["path"] == field, answer.text


_SHARED: list[Fn] = []


async def _shared_function(make_function: MakeFunction) -> Fn:
    """One function for the bad-input cases (none of them stores anything)."""
    if not _SHARED:
        _SHARED.append(await make_function(ECHO))
    return _SHARED[0]


async def test_a_duplicate_route_is_409_and_a_missing_function_404(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function(ECHO)
    base = f"/{unique()}"
    await route(http, fn, base)
    target = {"collection_topic": fn.collection, "service": fn.service}
    again = {"type": "http", "method": "POST", "path": f"{base}/", "function": target}
    duplicate = await http.post("/compute/triggers", json=again)
    assert duplicate.status_code == 409 and duplicate.json()["code"] == "conflict"
    await route(http, fn, base, method="GET")  # another method at the path is another route
    missing = {**again, "path": f"/{unique()}", "function": {**target, "service": "999999999"}}
    nowhere = await http.post("/compute/triggers", json=missing)
    assert nowhere.status_code == 404 and nowhere.json()["code"] == "function_not_found"


async def test_every_api_serves_the_routes_any_api_made(
    stack: Stack, http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function(ECHO)
    async with second_api(stack) as other:
        base = f"/{unique()}"
        await route(http, fn, base)  # made through the first API...
        deadline = asyncio.get_running_loop().time() + 2
        while (answer := await other.post(f"/r{base}")).status_code == 404:  # ...served by both
            assert asyncio.get_running_loop().time() < deadline, answer.text
            await asyncio.sleep(0.02)
        assert answer.status_code == 200 and answer.json()["rawPath"] == base
        target = {"collection_topic": fn.collection, "service": fn.service}
        again = {"type": "http", "method": "POST", "path": base, "function": target}
        assert (await other.post("/compute/triggers", json=again)).status_code == 409


async def test_a_route_left_by_a_deleted_function_does_not_keep_its_path(
    http: httpx.AsyncClient, nc: Client, make_function: MakeFunction
) -> None:
    """A route made while its function was being deleted outlives it; its path is taken over."""
    store = await TriggerStore.open(nc.jetstream())
    base = f"/{unique()}"
    gone = FunctionTarget(collection_topic="tests", service="999999999")
    orphan = HttpTrigger(id=new_trigger_id(), function=gone, method="POST", path=base, public=True)
    await store.create(orphan)
    fn = await make_function(ECHO)
    await route(http, fn, base)
    assert (await http.post(f"/r{base}")).json()["rawPath"] == base
    assert await store.claimed_by("POST", base) == (fn.collection, fn.service)
