"""Helpers the cluster tests share: make a function through one API (retrying while the cluster
settles after a fault), read every record of a function, wait until invocations are final."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from tests.helpers import function_body


async def make(http: httpx.AsyncClient, files: dict[str, str], **options: Any) -> str:
    ct = f"cl-{uuid.uuid4().hex[:8]}"
    body = function_body(files, collection=ct, **options)
    for _ in range(10):  # 503 says retry (the cluster may still be settling after a fault)
        created = await http.post("/compute/functions", json=body)
        if created.status_code != 503:
            break
        await asyncio.sleep(1)
    assert created.status_code == 201, created.text
    return f"/compute/functions/{ct}/{created.json()['body']['compute_asset']['service']}"


async def records(http: httpx.AsyncClient, path: str) -> list[dict[str, Any]]:
    """Every record of the function (pages of 1,000)."""
    found: list[dict[str, Any]] = []
    while True:
        params = {"limit": 1000, "offset": len(found)}
        listed = await http.get(f"{path}/invocations", params=params)
        assert listed.status_code == 200, listed.text
        page = listed.json()["body"]
        found += page["results"]
        if not page["results"] or len(found) >= page["results_total"]:
            return found


async def settled(
    http: httpx.AsyncClient, path: str, ids: set[str], timeout: float = 90
) -> dict[str, list[dict[str, Any]]]:
    """Every record of ``ids`` once all are final (succeeded or failed), by id."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        by_id: dict[str, list[dict[str, Any]]] = {}
        for record in await records(http, path):
            by_id.setdefault(str(record["invocation_id"]), []).append(record)
        final = {
            i for i in ids if by_id.get(i) and by_id[i][-1]["status"] in ("succeeded", "failed")
        }
        if final == ids:
            return by_id
        assert loop.time() < deadline, f"{len(ids - final)} of {len(ids)} not final"
        await asyncio.sleep(0.5)
