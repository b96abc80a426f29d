"""The CLI's everyday verbs against a running API: each takes an ``Api`` and its arguments and
returns what to print (JSON-able, or lines for ``logs``)."""

from __future__ import annotations

import base64
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from executor.client.api import Api, ClientError, FunctionFailed, function_path

_FOLLOW_POLL_S = 1.0


def read_payload(raw: str | None) -> str:
    """The payload as JSON text: an argument, ``@file``, or ``-`` for stdin (default null)."""
    if raw is None:
        text = "null"
    elif raw == "-":
        text = sys.stdin.read()
    elif raw.startswith("@"):
        try:
            text = Path(raw[1:]).read_text()
        except OSError as exc:
            raise ClientError(f"cannot read the payload file {raw[1:]}: {exc.strerror}") from None
    else:
        text = raw
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        hint = "" if text.lstrip()[:1] in ("{", "[") else "; a string needs quotes: '\"text\"'"
        raise ClientError(f"the payload is not JSON ({exc}){hint}") from None
    return text


def invoke(
    api: Api,
    ref: str,
    payload: str,
    *,
    asynchronous: bool = False,
    idempotency_key: str | None = None,
    alias: str | None = None,
    revision: int | None = None,
    timeout_ms: int | None = None,
) -> Any:
    body: dict[str, Any] = {
        # Sent as a JSON string holding the document, so a string payload stays a string.
        "payload": payload,
        "invocation_type": "Async" if asynchronous else "RequestResponse",
    }
    headers: dict[str, str] = {}
    params: dict[str, Any] = {}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    if alias:
        params["alias"] = alias
    if revision is not None:
        params["revision"] = revision
    if timeout_ms is not None:
        headers["Compute-Timeout-Ms"] = str(timeout_ms)
    path = f"{function_path(ref)}/invoke"
    return api.call("POST", path, json=body, params=params, headers=headers)


def ls(api: Api) -> list[str]:
    listing = api.call("GET", "/compute/functions", params={"limit": 1000})
    rows = []
    for fn in listing["results"]:
        asset = fn["compute_asset"]
        rows.append(
            f"{asset['collection_topic']}/{fn['name']}\t{asset['service']}\t"
            f"{fn['runtime']}\t{asset['handler']}\t{fn['subject']}"
        )
    return rows


def describe(api: Api, ref: str) -> Any:
    """The function as the API shows it, each asset by name and size instead of its bytes."""
    shown = api.call("GET", function_path(ref))
    assets = shown.get("compute_asset", {}).get("assets")
    if isinstance(assets, list):
        shown["compute_asset"]["assets"] = [
            {
                "asset_name": a.get("asset_name"),
                "bytes": len(base64.b64decode(a.get("asset_value") or "")),
                **({"link": True} if a.get("link") else {}),
            }
            for a in assets
        ]
    return shown


def remove(api: Api, ref: str) -> Any:
    deleted = api.call("DELETE", function_path(ref))
    return {"deleted": ref, "service": deleted["compute_asset"]["service"]}


def revisions(api: Api, ref: str) -> list[str]:
    listing = api.call("GET", f"{function_path(ref)}/revisions")
    rows = []
    for rev in listing["results"]:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(rev["created"]))
        aliases = ",".join(rev["aliases"]) or "-"
        rows.append(
            f"{rev['revision_number']}\t{created}\t{rev['runtime']}\t{rev['handler']}\t{aliases}"
        )
    return rows


def promote(api: Api, ref: str, number: int, *, alias: str, force: bool) -> Any:
    params = {"force": "true"} if force else None
    return api.call(
        "PUT",
        f"{function_path(ref)}/aliases/{alias}",
        json={"revision_number": number},
        params=params,
    )


def rollback(api: Api, ref: str, *, alias: str) -> Any:
    """Point ``alias`` at the newest revision older than the one it names now."""
    path = function_path(ref)
    now = api.call("GET", f"{path}/aliases/{alias}")["revision_number"]
    older = [
        r["revision_number"]
        for r in api.call("GET", f"{path}/revisions")["results"]
        if r["revision_number"] < now
    ]
    if not older:
        raise ClientError(f"{ref}: {alias} is at revision {now}, there is none older")
    return promote(api, ref, max(older), alias=alias, force=False)


def status(api: Api, ref: str, invocation_id: str) -> Any:
    return api.call("GET", f"{function_path(ref)}/invocations/{invocation_id}")


def raise_if_failed(record: dict[str, Any], invocation_id: str) -> None:
    """A failed record, once shown, still exits 1 (with its error on stderr)."""
    if record.get("status") == "failed":
        raise FunctionFailed(
            f"{record.get('error_code')}: {record.get('error_message')}\n"
            f"  invocation {invocation_id}"
        )


def dead_letters(api: Api, ref: str, limit: int) -> Any:
    return api.call("GET", f"{function_path(ref)}/dead-letters", params={"limit": limit})


def retry(api: Api, ref: str, invocation_id: str) -> Any:
    return api.call("POST", f"{function_path(ref)}/invocations/{invocation_id}/retry")


def token(
    api: Api, action: str, name_or_id: str | None, scopes: list[str] | None, expires_in: int | None
) -> Any:
    """``create NAME --scope S...`` (the secret is shown this once), ``ls``, ``revoke ID``."""
    if action == "ls":
        return api.call("GET", "/compute/tokens")
    if not name_or_id:
        raise ClientError(
            f"token {action}: give the token's {'name' if action == 'create' else 'id'}"
        )
    if action == "revoke":
        return api.call("DELETE", f"/compute/tokens/{quote(name_or_id, safe='')}")
    if not scopes:
        raise ClientError("token create: give at least one --scope (admin, or read:COLLECTION ...)")
    ask: dict[str, Any] = {"name": name_or_id, "scopes": scopes}
    if expires_in is not None:
        ask["expires_in_s"] = expires_in
    return api.call("POST", "/compute/tokens", json=ask)


def logs(
    api: Api, ref: str, *, limit: int, status_filter: str | None, follow: bool
) -> Iterator[str]:
    """Recent invocations, oldest first, each with its logs; with ``follow``, then new ones as
    they finish (until interrupted)."""
    path = f"{function_path(ref)}/invocations"
    params: dict[str, Any] = {"limit": limit}
    if status_filter:
        params["status"] = status_filter
    seen: set[str] = set()
    while True:
        listing = api.call("GET", path, params=params)
        for record in reversed(listing["results"]):
            key = f"{record['invocation_id']}:{record['status']}"
            if key in seen or record["status"] in ("queued", "running"):
                continue
            seen.add(key)
            yield from _record_lines(record)
        if not follow:
            return
        time.sleep(_FOLLOW_POLL_S)


def _record_lines(record: dict[str, Any]) -> Iterator[str]:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record["started"] / 1000))
    outcome = record.get("error_code") or record["status"]
    yield (
        f"--- {started} {record['invocation_id']} rev {record['revision']} {outcome} "
        f"{record['duration_ms']:.1f} ms"
    )
    if record.get("logs"):
        yield record["logs"].rstrip("\n")
