"""The OpenAPI document's component schemas: the msgspec wire types the routes take and answer,
the few views a route builds by hand (a stored type with a field renamed or added), and the
error body."""

from __future__ import annotations

import copy
from typing import Any

import msgspec

from executor.api.openapi_parts import ENVELOPES, ERROR_SCHEMAS, Schema
from schemas.functions import (
    AliasTarget,
    ComputeAssetPatch,
    ComputeAssetView,
    CreateFunctionRequest,
    FunctionPatch,
    FunctionView,
    Revision,
    RuntimeView,
)
from schemas.invocation_stats import CollectionStats, FunctionStats
from schemas.invocations import Accepted, DeadLetterView, InvokeRequest, MonitorRecord
from schemas.schedules import ScheduleRequest, ScheduleView
from schemas.tokens import CreatedToken, CreateTokenRequest, TokenView
from schemas.triggers import (
    HttpTrigger,
    HttpTriggerSpec,
    SubjectTrigger,
    SubjectTriggerSpec,
    TriggerPatch,
)

_TYPES = (
    Accepted,
    AliasTarget,
    CollectionStats,
    DeadLetterView,
    ComputeAssetPatch,
    ComputeAssetView,
    CreateFunctionRequest,
    FunctionPatch,
    FunctionStats,
    FunctionView,
    InvokeRequest,
    MonitorRecord,
    Revision,
    RuntimeView,
    ScheduleRequest,
    ScheduleView,
    CreateTokenRequest,
    CreatedToken,
    TokenView,
    HttpTriggerSpec,
    HttpTrigger,
    SubjectTriggerSpec,
    SubjectTrigger,
    TriggerPatch,
)


def _one_of(*names: str) -> Schema:
    """A body told apart by its ``type``, one of the named components."""
    return {
        "oneOf": [{"$ref": f"#/components/schemas/{n}"} for n in names],
        "discriminator": {"propertyName": "type"},
    }


_HAND_SCHEMAS: dict[str, Schema] = {
    "TriggerSpec": _one_of("HttpTriggerSpec", "SubjectTriggerSpec"),
    "Trigger": _one_of("HttpTrigger", "SubjectTrigger"),
    "InvocationResult": {"description": "the handler's result (any JSON value)"},
    "Alias": {
        "type": "object",
        "properties": {
            "alias": {"type": "string"},
            "revision_number": {"type": "integer", "minimum": 1},
        },
        "required": ["alias", "revision_number"],
    },
    "Collection": {
        "type": "object",
        "properties": {
            "collection_topic": {"type": "string"},
            "functions": {"type": "integer", "minimum": 0},
        },
        "required": ["collection_topic", "functions"],
    },
    "RevokedToken": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "revoked": {"type": "boolean"},
            "was_caller": {"type": "boolean", "description": "the token revoked itself"},
        },
        "required": ["id", "revoked", "was_caller"],
    },
    "Health": {
        "type": "object",
        "properties": {"status": {"const": "ok"}},
        "required": ["status"],
    },
    "Readiness": {
        "type": "object",
        "properties": {
            "ready": {"type": "boolean"},
            "bus": {"enum": ["connected", "disconnected"]},
            "workers": {"type": "integer", "minimum": 0},
            "isolation": {
                "description": "the workers' isolation level (a list when they differ)",
                "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
            },
            "isolation_gaps": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["ready", "bus", "workers", "isolation", "isolation_gaps"],
    },
}


def component_schemas() -> dict[str, Any]:
    _, found = msgspec.json.schema_components(_TYPES, ref_template="#/components/schemas/{name}")
    # What the lifecycle routes show is a stored type with a field renamed or a few added.
    revision = found.pop("Revision")  # shown only as RevisionView
    revision["title"] = "RevisionView"
    props = revision["properties"]
    revision["properties"] = {"revision_number": props.pop("number"), **props}
    revision["properties"]["aliases"] = {"type": "array", "items": {"type": "string"}}
    revision["properties"]["production"] = {"type": "boolean"}
    revision["required"] = [
        "revision_number" if name == "number" else name for name in revision["required"]
    ] + ["aliases", "production"]
    shown = copy.deepcopy(found["ComputeAssetView"])
    shown["title"] = "ComputeAssetShown"
    shown["description"] = "A compute asset with the revision it is and when that was made."
    shown["properties"]["revision"] = {"type": "integer", "minimum": 1}
    shown["properties"]["modified"] = {"type": "integer", "description": "unix seconds"}
    shown["required"] = [*shown["required"], "revision", "modified"]
    return {
        **found,
        "RevisionView": revision,
        "ComputeAssetShown": shown,
        **_HAND_SCHEMAS,
        **ERROR_SCHEMAS,
        **ENVELOPES,
    }
