"""Triggers: what ``POST /compute/triggers`` takes, what the registry stores and shows.

A trigger is a tagged Struct (``type`` is the tag), so another kind (``subject``, ``schedule``)
is one more class in ``TriggerSpec`` and ``Trigger``, beside ``http``, with the shared fields
(``id``, ``function``, ``enabled``, ``created``, ``modified``) spelt the same way.
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec
from msgspec import UNSET, UnsetType

from schemas.base import StoredStruct, Struct
from schemas.errors import InvalidRequest, detail

HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "ANY"]
HTTP_METHODS: tuple[str, ...] = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
ANY_METHOD = "ANY"
MAX_PATH_CHARS = 256
# One path segment: unreserved characters of RFC 3986 (no '%', so a path has one spelling).
_SEGMENT = re.compile(r"^[A-Za-z0-9._~-]+$")
TRIGGER_ID = re.compile(r"^trg_[0-9a-f]{16}$")


class FunctionTarget(Struct):
    """The function a trigger invokes: a collection and the service id (or the name)."""

    collection_topic: str
    service: str


class RouteLimits(Struct):
    """``limits`` of an HTTP route: invocations per second through it, across the APIs."""

    rps: float | UnsetType = UNSET
    burst: int | UnsetType = UNSET


class HttpTriggerSpec(Struct, tag_field="type", tag="http"):
    """The create body of an HTTP route (``type: "http"``)."""

    method: HttpMethod
    path: str
    function: FunctionTarget
    public: bool = False
    limits: RouteLimits = msgspec.field(default_factory=RouteLimits)
    timeout: int | UnsetType = UNSET  # milliseconds, at most the function's
    # Revision number (as a string, JSON keys are) -> weight; unset: the production alias.
    traffic: dict[str, int] | UnsetType = UNSET
    enabled: bool = True


# The bodies POST /compute/triggers takes, told apart by ``type``.
TriggerSpec = HttpTriggerSpec


class TriggerPatch(Struct):
    """``PATCH /compute/triggers/{id}``: switch a trigger off and on."""

    enabled: bool


class HttpTrigger(StoredStruct, tag_field="type", tag="http"):
    """An HTTP route as stored and shown; ``function.service`` is always the service id."""

    id: str
    function: FunctionTarget
    method: str
    path: str
    public: bool
    limits: RouteLimits = msgspec.field(default_factory=RouteLimits)
    timeout: int | UnsetType = UNSET
    traffic: dict[str, int] | UnsetType = UNSET
    enabled: bool = True
    created: int = 0
    modified: int = 0


# Every kind of stored trigger, told apart by ``type``.
Trigger = HttpTrigger


def check_route_path(path: str) -> str:
    """``path`` as routes keep it (no trailing slash but the root); a 400 naming /path."""
    reason = None
    if not path.startswith("/"):
        reason = "must start with '/'"
    elif len(path) > MAX_PATH_CHARS:
        reason = f"must be at most {MAX_PATH_CHARS} characters"
    else:
        trimmed = path.rstrip("/") or "/"
        segments = trimmed.split("/")[1:] if trimmed != "/" else []
        if any(s in (".", "..") for s in segments):
            reason = "may not have '.' or '..' segments"
        elif any(not _SEGMENT.fullmatch(s) for s in segments):
            reason = "segments are letters, digits and '-', '.', '_', '~', separated by one '/'"
        else:
            return trimmed
    raise InvalidRequest(f"/path: {path!r} {reason}", [detail("/path", reason)])


def check_traffic_shape(traffic: dict[str, int]) -> dict[int, int]:
    """Weights by revision number: integer keys, weights 0..100 that add up to 100."""
    found: dict[int, int] = {}
    for key, weight in traffic.items():
        if not key.isdigit() or int(key) < 1 or len(key) > 9:
            _bad(f"/traffic/{key}", "must be a revision number (1 or more)")
        if not 0 <= weight <= 100:
            _bad(f"/traffic/{key}", f"must be a weight from 0 to 100, got {weight}")
        found[int(key)] = weight
    if not found:
        _bad("/traffic", "must name at least one revision")
    total = sum(found.values())
    if total != 100:
        _bad("/traffic", f"weights must add up to 100, they add up to {total}")
    return found


def _bad(path: str, reason: str) -> None:
    raise InvalidRequest(f"{path}: {reason}", [detail(path, reason)])
