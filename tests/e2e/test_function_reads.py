"""The read-only function routes (get, list, collections, 404s), and that a new API process
knows every function (nothing lives only in API memory)."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.e2e.bodies import (
    COMPUTE_ASSET_KEYS,
    CREATE,
    NODE_OK,
    VIEW_KEYS,
    assert_error,
    unique,
)
from tests.helpers import (
    MakeFunction,
    Stack,
    function_body,
    second_api,
)

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
        # A listing also says what plain invokes run: the production revision, the aliases.
        assert set(item) == VIEW_KEYS | {"revision", "aliases"}
        assert item["revision"] == item["aliases"]["production"] == 1
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
