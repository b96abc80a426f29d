"""What the create tests share: the seed's body and response, and helpers to build, bend and
count function bodies, bundles and archives."""

from __future__ import annotations

import copy
import io
import re
import tarfile
import uuid
import zipfile
from collections.abc import Mapping
from typing import Any

import httpx
from nats.aio.client import Client

from bus import subjects
from bus.bundles import BundleStore
from tests.helpers import (
    b64,
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
