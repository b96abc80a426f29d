"""Archive assets unpack into the workspace and run; unsafe archives and links that leave the
bundle are refused."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from nats.aio.client import Client

from tests.e2e.bodies import (
    CREATE,
    NODE_OK,
    add_asset,
    assert_error,
    registry_keys,
    tar_gz,
    unique,
    zip_bytes,
)
from tests.helpers import (
    Fn,
    MakeFunction,
    b64,
    function_body,
)

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
