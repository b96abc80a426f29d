"""The everyday client verbs (deploy, invoke, ls, logs) against a running API over HTTP."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import httpx

SKIP_DIRS = {".git", "__pycache__", ".venv", ".computebus"}


class ClientError(Exception):
    pass


def _check(response: httpx.Response) -> Any:
    try:
        data = response.json()
    except ValueError:
        raise ClientError(f"HTTP {response.status_code}: {response.text[:500]}") from None
    if response.status_code >= 400:
        details = "".join(
            f"\n  {d.get('path', '')}: {d.get('message', d)}" for d in data.get("details", [])
        )
        raise ClientError(
            f"{data.get('code')} ({response.status_code}): {data.get('error')}{details}"
        )
    return data["body"]


def pack(folder: Path) -> list[dict[str, Any]]:
    """Every file under ``folder`` as a base64 ``file`` asset; symlinks become ``link`` assets."""
    assets = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part in SKIP_DIRS for part in rel.parts):
            continue
        if path.is_symlink():
            target = str(Path(path.readlink()))
            assets.append(
                {
                    "asset_name": rel.as_posix(),
                    "asset_type": "file",
                    "link": True,
                    "asset_value": base64.b64encode(target.encode()).decode(),
                }
            )
        elif path.is_file():
            assets.append(
                {
                    "asset_name": rel.as_posix(),
                    "asset_type": "file",
                    "link": False,
                    "asset_value": base64.b64encode(path.read_bytes()).decode(),
                }
            )
    return assets


def guess_handler(folder: Path) -> tuple[str, str]:
    for runtime, name in (("nodejs", "index.js"), ("python", "index.py"), ("python", "main.py")):
        if (folder / name).is_file():
            return runtime, f"{Path(name).stem}.handler"
    raise ClientError(f"no index.js, index.py or main.py in {folder}; pass --handler")


def deploy(
    api: str,
    folder: Path,
    *,
    collection: str,
    name: str,
    handler: str | None,
    runtime: str | None,
    schema_in: Path | None,
    schema_out: Path | None,
    timeout: int | None,
) -> Any:
    guessed_runtime, guessed_handler = (None, None)
    if handler is None or runtime is None:
        guessed_runtime, guessed_handler = guess_handler(folder)
    body: dict[str, Any] = {
        "name": name,
        "compute_asset": {
            "collection_topic": collection,
            "handler": handler or guessed_handler,
            "runtime": runtime or guessed_runtime,
            "assets": pack(folder),
            "timeout": timeout or 30000,
        },
        "monitor_config": {"ttl": 7 * 24 * 3600 * 1000, "store_payload": True},
        "schema": {
            "input": json.loads(schema_in.read_text()) if schema_in else None,
            "output": json.loads(schema_out.read_text()) if schema_out else None,
        },
    }
    with httpx.Client(base_url=api, timeout=120) as client:
        return _check(client.post("/compute/functions", json=body))


def _find(client: httpx.Client, ref: str) -> tuple[str, str]:
    collection, _, name = ref.partition("/")
    if not collection or not name:
        raise ClientError(f"{ref!r}: expected COLLECTION/NAME (or COLLECTION/SERVICE_ID)")
    listing = _check(
        client.get(f"/compute/collections/{collection}/functions", params={"limit": 1000})
    )
    for fn in listing["results"]:
        if name in (fn["name"], fn["compute_asset"]["service"]):
            return collection, fn["compute_asset"]["service"]
    raise ClientError(f"no function {name!r} in collection {collection!r}")


def invoke(
    api: str, ref: str, payload: str, *, asynchronous: bool, idempotency_key: str | None = None
) -> Any:
    try:
        json.loads(payload)
    except json.JSONDecodeError as exc:
        raise ClientError(f"payload is not JSON: {exc}") from None
    with httpx.Client(base_url=api, timeout=None) as client:
        ct, ft = _find(client, ref)
        kind = "Async" if asynchronous else "RequestResponse"
        return _check(
            client.post(
                f"/compute/functions/{ct}/{ft}/invoke",
                # Sent as a JSON string holding the document, so a string payload stays a string.
                json={"payload": payload, "invocation_type": kind},
                headers={"Idempotency-Key": idempotency_key} if idempotency_key else None,
            )
        )


def ls(api: str) -> list[str]:
    with httpx.Client(base_url=api, timeout=30) as client:
        listing = _check(client.get("/compute/functions", params={"limit": 1000}))
    rows = []
    for fn in listing["results"]:
        asset = fn["compute_asset"]
        rows.append(
            f"{asset['collection_topic']}/{fn['name']}\t{asset['service']}\t"
            f"{fn['runtime']}\t{asset['handler']}\t{fn['subject']}"
        )
    return rows


def logs(api: str, ref: str, limit: int) -> list[str]:
    with httpx.Client(base_url=api, timeout=30) as client:
        ct, ft = _find(client, ref)
        listing = _check(
            client.get(f"/compute/functions/{ct}/{ft}/invocations", params={"limit": limit})
        )
    lines = []
    for record in listing["results"]:
        outcome = record.get("error_code") or record["status"]
        lines.append(
            f"--- {record['invocation_id']} rev {record['revision']} {outcome} "
            f"{record['duration_ms']} ms"
        )
        if record.get("logs"):
            lines.append(record["logs"].rstrip("\n"))
    return lines


def emit(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")
