"""The function lifecycle: new revisions, aliases (stage, promote, roll back), metadata, history,
delete, the events each publishes, and concurrent changes."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
from nats.aio.client import Client

from bus.bundles import BundleStore
from tests.helpers import Fn, MakeFunction, b64

VERSION = (
    "const TOKEN = Math.random().toString(36);\n"
    "exports.handler = async (e) => ({{v: {v}, token: TOKEN}});\n"
)


def code(v: int) -> dict[str, str]:
    return {"index.js": VERSION.format(v=v)}


def assets(v: int) -> list[dict[str, str]]:
    return [{"asset_name": "index.js", "asset_value": b64(VERSION.format(v=v))}]


async def run(http: httpx.AsyncClient, fn: Fn, **params: Any) -> dict[str, Any]:
    response = await http.post(f"{fn.path}/invoke", params=params, json={"payload": None})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["body"]
    return result


async def run_nats(nc: Client, fn: Fn, **headers: str) -> dict[str, Any]:
    reply = await nc.request(fn.subject, b"null", timeout=10, headers=headers or None)
    assert not (reply.headers or {}).get("Nats-Service-Error-Code"), reply.data
    result: dict[str, Any] = json.loads(reply.data)
    return result


def asset_path(fn: Fn) -> str:
    return f"/compute/compute-assets/{fn.collection}/{fn.service}"


async def patch_code(
    http: httpx.AsyncClient, fn: Fn, v: int, promote: bool = True
) -> httpx.Response:
    params = {} if promote else {"promote": "false"}
    return await http.patch(asset_path(fn), params=params, json={"assets": assets(v)})


async def test_stage_invoke_by_alias_promote_and_roll_back(
    http: httpx.AsyncClient, nc: Client, make_function: MakeFunction
) -> None:
    fn = await make_function(code(1))
    assert (await run(http, fn))["v"] == 1

    # A new revision, promoted by default.
    response = await patch_code(http, fn, 2)
    assert response.status_code == 200, response.text
    assert response.json()["body"]["type"] == "updated"
    assert (await run(http, fn))["v"] == 2
    assert (await run_nats(nc, fn))["v"] == 2

    # Staged: revision 3 exists but production stays on 2.
    assert (await patch_code(http, fn, 3, promote=False)).status_code == 200
    assert (await run(http, fn))["v"] == 2
    assert (await run(http, fn, revision=3))["v"] == 3
    staged = await http.put(f"{fn.path}/aliases/staging", json={"revision_number": 3})
    assert staged.json()["body"] == {"alias": "staging", "revision_number": 3}
    assert (await run(http, fn, alias="staging"))["v"] == 3
    assert (await run_nats(nc, fn, **{"Compute-Alias": "staging"}))["v"] == 3
    assert (await run_nats(nc, fn, **{"Compute-Revision": "1"}))["v"] == 1

    # Promote, then roll back: each takes effect on the very next invocation.
    promoted = await http.put(f"{fn.path}/aliases/production", json={"revision_number": 3})
    assert promoted.status_code == 200, promoted.text
    assert (await run_nats(nc, fn))["v"] == 3  # workers took the record before the PUT answered
    assert (await run(http, fn))["v"] == 3
    await http.put(f"{fn.path}/aliases/production", json={"revision_number": 2})
    assert (await run_nats(nc, fn))["v"] == 2
    assert (await run(http, fn))["v"] == 2

    listed = (await http.get(f"{fn.path}/aliases")).json()["body"]["results"]
    assert listed == [
        {"alias": "production", "revision_number": 2},
        {"alias": "staging", "revision_number": 3},
    ]
    revisions = (await http.get(f"{fn.path}/revisions")).json()["body"]
    assert [r["revision_number"] for r in revisions["results"]] == [1, 2, 3]
    assert [r["aliases"] for r in revisions["results"]] == [[], ["production"], ["staging"]]
    one = (await http.get(f"{fn.path}/revisions/3")).json()["body"]
    assert one["revision_number"] == 3 and one["production"] is False
    assert (await http.get(f"{fn.path}/revisions/9")).status_code == 404

    history = (await http.get(f"{asset_path(fn)}/history")).json()["body"]
    assert [h["revision"] for h in history["results"]] == [3, 1]
    assert all(h["modified"] > 0 for h in history["results"])
    current = (await http.get(asset_path(fn))).json()["body"]
    assert current["revision"] == 2
    assert current["assets"][0]["asset_value"] == b64(VERSION.format(v=2))


async def test_processes_of_revisions_no_alias_points_to_are_retired(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function(code(1))
    first = (await run(http, fn))["token"]
    assert (await run(http, fn))["token"] == first  # warm
    await patch_code(http, fn, 2)  # production moves to 2; nothing points at 1
    await run(http, fn)
    for _ in range(50):
        again = (await run(http, fn, revision=1))["token"]
        if again != first:
            break
        await asyncio.sleep(0.05)
    assert again != first  # revision 1's old process was stopped; a new one answered


async def test_patch_function_metadata_rename_and_schema(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function(code(1), name=f"old-{id(http)}")
    old_name = fn.body["name"]
    new_name = old_name.replace("old-", "new-")
    response = await http.patch(
        fn.path,
        json={
            "name": new_name,
            "description": "renamed",
            "monitor_config": {"ttl": 1000, "store_payload": False},
        },
    )
    assert response.status_code == 200, response.text
    shown = response.json()["body"]
    assert shown["name"] == new_name and shown["description"] == "renamed"
    assert shown["subject"] == fn.subject  # same service id, same subject
    assert shown["monitor_config"] == {"ttl": 1000, "store_payload": False}
    # The old name is free again; the new one is taken.
    again = await make_function(code(1), name=old_name)
    assert again.service != fn.service
    taken = await http.patch(again.path, json={"name": new_name})
    assert taken.status_code == 409, taken.text
    assert taken.json()["code"] == "function_exists"

    # A schema change is a new revision (this one breaks callers: past the gate with force).
    schema = {"input": {"type": "object", "required": ["x"]}}
    response = await http.patch(fn.path, params={"force": "true"}, json={"schema": schema})
    assert response.status_code == 200, response.text
    revisions = (await http.get(f"{fn.path}/revisions")).json()["body"]["results"]
    assert [r["revision_number"] for r in revisions] == [1, 2]
    refused = await http.post(f"{fn.path}/invoke", json={"payload": {}})
    assert refused.status_code == 400 and refused.json()["code"] == "invalid_input"


async def test_lifecycle_events(
    http: httpx.AsyncClient, nc: Client, make_function: MakeFunction
) -> None:
    fn = await make_function(code(1))
    events = await nc.subscribe(f"{fn.subject}.event.*")
    await nc.flush()  # subscribed before the first change
    await patch_code(http, fn, 2)
    await http.put(f"{fn.path}/aliases/production", json={"revision_number": 1})
    await http.patch(fn.path, json={"description": "d"})
    deleted = await http.delete(fn.path)
    assert deleted.status_code == 200, deleted.text
    seen = []
    for _ in range(5):
        msg = await events.next_msg(timeout=5)
        seen.append((msg.subject.rsplit(".", 1)[1], json.loads(msg.data)))
    await events.unsubscribe()
    assert [kind for kind, _ in seen] == ["updated", "promoted", "promoted", "updated", "deleted"]
    for kind, record in seen:
        assert record["type"] == kind
        assert record["subject"] == fn.subject
        assert record["modified"] > 0
    assert seen[2][1]["compute_asset"]["service"] == fn.service
    assert seen[3][1]["description"] == "d"


async def test_delete_makes_it_404_and_collects_its_bundle(
    http: httpx.AsyncClient, nc: Client, make_function: MakeFunction
) -> None:
    fn = await make_function({"index.js": f"exports.handler = async () => '{id(nc)}-unique';"})
    store = await BundleStore.open(nc.jetstream())
    before = await store.digests()
    assert (await http.post(f"{fn.path}/invoke", json={"payload": 1})).status_code == 200
    assert (await http.delete(fn.path)).status_code == 200
    gone = await http.post(f"{fn.path}/invoke", json={"payload": 1})
    assert gone.status_code == 404 and gone.json()["code"] == "function_not_found"
    assert (await http.get(fn.path)).status_code == 404
    assert (await http.delete(fn.path)).status_code == 404
    reply = await nc.request(fn.subject, b"1", timeout=10)
    assert reply.headers is not None and reply.headers["Nats-Service-Error-Code"] == "404"
    after = await store.digests()
    assert len(before - after) == 1  # its bundle, used by no other revision, is gone


async def test_racing_patches_never_share_a_number(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function(code(1))
    responses = await asyncio.gather(*(patch_code(http, fn, v) for v in range(2, 8)))
    assert [r.status_code for r in responses] == [200] * 6
    revisions = (await http.get(f"{fn.path}/revisions")).json()["body"]["results"]
    assert [r["revision_number"] for r in revisions] == list(range(1, 8))
    shown = (await http.get(fn.path)).json()["body"]
    assert shown["revision"] == shown["aliases"]["production"]


async def test_bad_lifecycle_input(http: httpx.AsyncClient, make_function: MakeFunction) -> None:
    fn = await make_function(code(1))
    unknown = await http.patch(asset_path(fn), json={"handlr": "x"})
    assert unknown.status_code == 400 and unknown.json()["details"][0]["path"] == "/handlr"
    missing = await http.patch(asset_path(fn), json={"handler": "nope.handler"})
    assert missing.status_code == 400, missing.text
    bad_timeout = await http.patch(asset_path(fn), json={"timeout": 0})
    assert bad_timeout.json()["details"][0]["path"] == "/compute_asset/timeout"
    moved = await http.patch(asset_path(fn), json={"collection_topic": "elsewhere"})
    assert moved.status_code == 400
    bad_alias = await http.put(f"{fn.path}/aliases/Not_A_Label", json={"revision_number": 1})
    assert bad_alias.status_code == 400
    no_rev = await http.put(f"{fn.path}/aliases/x", json={"revision_number": 5})
    assert no_rev.status_code == 400 and no_rev.json()["details"][0]["path"] == "/revision_number"
    assert (await http.get(f"{fn.path}/aliases/none")).status_code == 404
    bad_promote = await http.patch(asset_path(fn), params={"promote": "maybe"}, json={})
    assert bad_promote.status_code == 400
    nothing = await http.patch("/compute/functions/tests/123456789", json={"description": "x"})
    assert nothing.status_code == 404
    revisions = (await http.get(f"{fn.path}/revisions")).json()["body"]["results"]
    assert [r["revision_number"] for r in revisions] == [1]  # nothing above made a revision


async def test_promoting_an_incompatible_schema_is_409_unless_forced(
    http: httpx.AsyncClient, nc: Client, make_function: MakeFunction
) -> None:
    fn = await make_function(code(1), schema={"input": {"type": ["object", "null"]}})
    stricter = {"input": {"type": ["object", "null"], "required": ["id"]}}
    staged = await http.patch(fn.path, params={"promote": "false"}, json={"schema": stricter})
    assert staged.status_code == 200, staged.text
    refused = await http.put(f"{fn.path}/aliases/production", json={"revision_number": 2})
    assert refused.status_code == 409, refused.text
    error = refused.json()
    assert error["code"] == "incompatible_schema"
    assert error["details"] == [
        {"path": "/schema/input/required", "message": "accepts less: required gains id"}
    ]
    assert (await run(http, fn))["v"] == 1  # production did not move
    # Other aliases are not gated; force moves production.
    assert (
        await http.put(f"{fn.path}/aliases/canary", json={"revision_number": 2})
    ).status_code == 200
    forced = await http.put(
        f"{fn.path}/aliases/production", params={"force": "true"}, json={"revision_number": 2}
    )
    assert forced.status_code == 200, forced.text
    # Rolling back to the looser schema is compatible.
    back = await http.put(f"{fn.path}/aliases/production", json={"revision_number": 1})
    assert back.status_code == 200, back.text


async def test_a_patch_that_promotes_passes_the_schema_gate_too(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function(code(1), schema={"input": {"type": ["object", "null"]}})
    stricter = {"input": {"type": ["object", "null"], "required": ["id"]}}
    refused = await http.patch(fn.path, json={"schema": stricter})  # promotes by default
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "incompatible_schema"
    assert "?promote=false" in refused.json()["error"]
    revisions = (await http.get(f"{fn.path}/revisions")).json()["body"]["results"]
    assert [r["revision_number"] for r in revisions] == [1]  # nothing was stored
    staged = await http.patch(fn.path, params={"promote": "false"}, json={"schema": stricter})
    assert staged.status_code == 200, staged.text
    assert staged.json()["body"]["new_revision"] == 2
    assert (await http.get(f"{fn.path}/aliases/production")).json()["body"]["revision_number"] == 1
    forced = await http.patch(fn.path, params={"force": "true"}, json={"schema": stricter})
    assert forced.status_code == 200 and forced.json()["body"]["new_revision"] == 3
    production = (await http.get(f"{fn.path}/aliases/production")).json()["body"]
    assert production["revision_number"] == 3
    # A staged compute-asset change says which revision it made.
    made = await patch_code(http, fn, 4, promote=False)
    assert made.status_code == 200 and made.json()["body"]["new_revision"] == 4


async def test_publishability(http: httpx.AsyncClient, make_function: MakeFunction) -> None:
    fn = await make_function(code(1))
    shown = (await http.get(fn.path)).json()["body"]
    assert shown["publishable"] is True and shown["publish_blockers"] == []

    # A PATCH whose handler file has no such export is refused with the blocker; nothing changes.
    no_export = [{"asset_name": "index.js", "asset_value": b64("exports.other = () => 1;\n")}]
    refused = await http.patch(asset_path(fn), json={"assets": no_export})
    assert refused.status_code == 400, refused.text
    detail = refused.json()["details"][0]
    assert detail["path"] == "/compute_asset/handler"
    assert detail["reason"] == "handler_not_found"
    assert "index.js" in detail["message"]
    broken = [{"asset_name": "index.js", "asset_value": b64("throw new Error('boom');\n")}]
    refused = await http.patch(asset_path(fn), json={"assets": broken})
    assert refused.status_code == 400 and "boom" in refused.text
    revisions = (await http.get(f"{fn.path}/revisions")).json()["body"]["results"]
    assert [r["revision_number"] for r in revisions] == [1]
    assert (await run(http, fn))["v"] == 1
    # The number a refused revision held is used by the next good one.
    assert (await patch_code(http, fn, 2)).status_code == 200
    assert (await run(http, fn))["v"] == 2

    # Created as the seed is (handler file without the export): shown as not publishable.
    seed_like = await make_function({"index.js": "console.log('loaded');\n"})
    shown = (await http.get(seed_like.path)).json()["body"]
    assert shown["publishable"] is False
    assert [b["reason"] for b in shown["publish_blockers"]] == ["handler_not_found"]
    refused = await http.put(f"{seed_like.path}/aliases/canary", json={"revision_number": 1})
    assert refused.status_code == 400, refused.text


async def test_a_function_can_be_named_by_its_name_where_its_service_id_goes(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    name = f"by-name-{uuid.uuid4().hex[:8]}"
    fn = await make_function(code(1), name=name)
    by_name = f"/compute/functions/{fn.collection}/{name}"
    shown = await http.get(by_name)
    assert shown.status_code == 200, shown.text
    assert shown.json()["body"]["compute_asset"]["service"] == fn.service
    answer = await http.post(f"{by_name}/invoke", json={"payload": None})
    assert answer.status_code == 200 and answer.json()["body"]["v"] == 1
    assert (await http.get(f"{by_name}/revisions")).status_code == 200
    assert (await http.get(fn.path)).status_code == 200  # the service id stays valid
    missing = await http.get(f"/compute/functions/{fn.collection}/no-such-{name}")
    assert missing.status_code == 404 and missing.json()["code"] == "function_not_found"
