"""``computebus deploy DIR``: create the function, or update it (a new revision, promoted unless
``--stage``), from a folder and its ``computebus.toml``; flags win over the file.

An update sends only what differs from the revision production runs, and says what changed.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from executor.client.api import Api, ClientError, function_path
from executor.client.bundling import built, pack

PROJECT_FILE = "computebus.toml"
DEFAULT_TIMEOUT_MS = 30_000
DEFAULT_TTL_MS = 7 * 24 * 3600 * 1000


@dataclass
class DeployOptions:
    """What a deploy sets; None (or empty) is "not said": the default at create, kept at update."""

    collection: str | None = None
    name: str | None = None
    handler: str | None = None
    runtime: str | None = None
    timeout: int | None = None
    size: str | None = None
    ttl: int | None = None
    store_payload: bool | None = None
    async_retries: int | None = None
    description: str | None = None
    schema_in: Path | None = None
    schema_out: Path | None = None
    env: dict[str, str] | None = None
    stage: bool = False
    said: set[str] = field(default_factory=set)


_TYPES: dict[str, type | tuple[type, ...]] = {
    "collection": str,
    "name": str,
    "handler": str,
    "runtime": str,
    "timeout": int,
    "size": str,
    "ttl": int,
    "store_payload": bool,
    "async_retries": int,
    "description": str,
    "schema_in": str,
    "schema_out": str,
    "env": dict,
}


def read_project(folder: Path) -> dict[str, Any]:
    """``computebus.toml`` beside the code, checked key by key ({} when there is none)."""
    path = folder / PROJECT_FILE
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ClientError(f"{path}: {exc}") from None
    for key, value in data.items():
        wanted = _TYPES.get(key)
        if wanted is None:
            known = ", ".join(sorted(_TYPES))
            raise ClientError(f"{path}: unknown key {key!r} (known: {known})")
        if not isinstance(value, wanted) or (wanted is int and isinstance(value, bool)):
            raise ClientError(f"{path}: {key} must be a {_type_name(wanted)}")
    for key, value in (data.get("env") or {}).items():
        if not isinstance(value, str):
            raise ClientError(f"{path}: env.{key} must be a string")
    for key in ("schema_in", "schema_out"):
        if key in data:
            data[key] = folder / data[key]
    return data


def options(folder: Path, flags: dict[str, Any]) -> DeployOptions:
    """The project file's values, with the flags that were given on top."""
    merged = read_project(folder)
    merged.update({k: v for k, v in flags.items() if v is not None})
    known = {f.name for f in fields(DeployOptions)} - {"said"}
    chosen = DeployOptions(**{k: v for k, v in merged.items() if k in known})
    chosen.said = {k for k, v in merged.items() if v is not None and k != "stage"}
    if not chosen.collection or not chosen.name:
        raise ClientError(
            f"which function? give --collection and --name (or collection and name in "
            f"{folder / PROJECT_FILE})"
        )
    return chosen


def guess_handler(folder: Path) -> tuple[str, str]:
    for runtime, name in (("nodejs", "index.js"), ("python", "index.py"), ("python", "main.py")):
        if (folder / name).is_file():
            return runtime, f"{Path(name).stem}.handler"
    raise ClientError(f"no index.js, index.py or main.py in {folder}; pass --handler and --runtime")


def deploy(api: Api, folder: Path, chosen: DeployOptions) -> dict[str, Any]:
    if not folder.is_dir():
        raise ClientError(f"{folder} is not a folder")
    assert chosen.collection and chosen.name
    ref = f"{chosen.collection}/{chosen.name}"
    path = function_path(ref)
    current = api.call("GET", path, missing_ok=True)
    runtime = chosen.runtime or (current and current["runtime"]) or guess_handler(folder)[0]
    with built(folder, runtime) as stage:
        assets = pack(stage, rules_from=folder)
    if current is None:
        return _create(api, folder, chosen, ref, runtime, assets)
    return _update(api, path, folder, chosen, ref, current, runtime, assets)


def _create(
    api: Api,
    folder: Path,
    chosen: DeployOptions,
    ref: str,
    runtime: str,
    assets: list[dict[str, Any]],
) -> dict[str, Any]:
    guessed_runtime, guessed_handler = (
        guess_handler(folder) if not chosen.handler else (runtime, chosen.handler)
    )
    body: dict[str, Any] = {
        "name": chosen.name,
        "compute_asset": {
            "collection_topic": chosen.collection,
            "handler": chosen.handler or guessed_handler,
            "runtime": chosen.runtime or guessed_runtime,
            "assets": assets,
            "timeout": chosen.timeout or DEFAULT_TIMEOUT_MS,
            "env_vars": _env_vars(chosen.env or {}),
        },
        "monitor_config": {
            "ttl": chosen.ttl or DEFAULT_TTL_MS,
            "store_payload": True if chosen.store_payload is None else chosen.store_payload,
        },
        "schema": {"input": _schema(chosen.schema_in), "output": _schema(chosen.schema_out)},
    }
    if chosen.size:
        body["size"] = chosen.size
    if chosen.description is not None:
        body["description"] = chosen.description
    if chosen.async_retries is not None:
        body["async_config"] = {"max_attempts": chosen.async_retries + 1}
    created = api.call("POST", "/compute/functions", json=body)
    return {
        "deployed": ref,
        "action": "created",
        "service": created["compute_asset"]["service"],
        "revision": 1,
        "promoted": True,
    }


def _update(
    api: Api,
    path: str,
    folder: Path,
    chosen: DeployOptions,
    ref: str,
    current: dict[str, Any],
    runtime: str,
    assets: list[dict[str, Any]],
) -> dict[str, Any]:
    ct, ft = chosen.collection, current["compute_asset"]["service"]
    running = api.call("GET", f"/compute/compute-assets/{ct}/{ft}")  # what production runs
    changed: list[str] = []
    revision: int | None = None

    # What the new revision would be, field by field: the folder and the flags, else what
    # production runs. Compared with production to tell what changed.
    asset_fields: dict[str, Any] = {
        "assets": assets,
        "handler": chosen.handler or running["handler"],
        "runtime": runtime,
        "timeout": chosen.timeout or running["timeout"],
        "env_vars": running.get("env_vars", []) if chosen.env is None else _env_vars(chosen.env),
    }
    if _asset_key(assets) != _asset_key(running.get("assets") or []):
        changed.append("code")
    for key in ("handler", "runtime", "timeout", "env_vars"):
        if asset_fields[key] != running.get(key, [] if key == "env_vars" else None):
            changed.append(key)
    schema = dict(current.get("schema") or {})
    for key, file in (("input", chosen.schema_in), ("output", chosen.schema_out)):
        if file is not None and _schema(file) != schema.get(key):
            schema[key] = _schema(file)
            changed.append(f"schema.{key}")
    size = chosen.size or current.get("size")
    if size != current.get("size"):
        changed.append("size")

    if changed:
        # Every field is sent: the server builds a revision on the latest one, which may be a
        # staged revision the folder no longer holds. Production moves once, at the end, and
        # through the schema gate: a refusal leaves it where it was.
        promote = "false" if chosen.stage else "true"
        schema_change = schema != (current.get("schema") or {}) or size != current.get("size")
        made = api.call(
            "PATCH",
            f"/compute/compute-assets/{ct}/{ft}",
            json=asset_fields,
            params={"promote": "false" if schema_change else promote},
        )
        revision = made.get("new_revision")
        if schema_change:
            made = api.call(
                "PATCH", path, json={"schema": schema, "size": size}, params={"promote": promote}
            )
            revision = made.get("new_revision", revision)

    meta = _metadata_patch(chosen, current, changed)
    if meta:
        api.call("PATCH", path, json=meta)
    return {
        "deployed": ref,
        "action": "updated" if changed else "unchanged",
        "service": ft,
        "revision": revision if revision is not None else current.get("revision"),
        "promoted": revision is not None and not chosen.stage,
        "changed": changed,
    }


def _metadata_patch(
    chosen: DeployOptions, current: dict[str, Any], changed: list[str]
) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    monitor = dict(current["monitor_config"])
    if chosen.ttl is not None and chosen.ttl != monitor.get("ttl"):
        monitor["ttl"] = chosen.ttl
        changed.append("ttl")
    if chosen.store_payload is not None and chosen.store_payload != monitor.get("store_payload"):
        monitor["store_payload"] = chosen.store_payload
        changed.append("store_payload")
    if monitor != current["monitor_config"]:
        patch["monitor_config"] = monitor
    if chosen.async_retries is not None:
        attempts = chosen.async_retries + 1
        if attempts != (current.get("async_config") or {}).get("max_attempts"):
            patch["async_config"] = {"max_attempts": attempts}
            changed.append("async_retries")
    if chosen.description is not None and chosen.description != current.get("description"):
        patch["description"] = chosen.description
        changed.append("description")
    return patch


def _asset_key(assets: list[dict[str, Any]]) -> list[tuple[str, str, bool]]:
    return sorted((a["asset_name"], a["asset_value"], bool(a.get("link"))) for a in assets)


def _env_vars(env: dict[str, str]) -> list[str]:
    return [f"{key}={value}" for key, value in sorted(env.items())]


def _schema(path: Path | None) -> Any:
    if path is None:
        return None
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise ClientError(f"cannot read the schema file {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ClientError(f"the schema file {path} is not JSON: {exc}") from None


def _type_name(wanted: type | tuple[type, ...]) -> str:
    names = {str: "string", int: "whole number", bool: "true or false", dict: "table"}
    return names.get(wanted, str(wanted)) if isinstance(wanted, type) else str(wanted)
