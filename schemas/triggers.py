"""Triggers: what ``POST /compute/triggers`` takes, what the registry stores and shows.

A trigger is a tagged Struct (``type`` is the tag), so another kind (``subject``, ``schedule``)
is one more class in ``TriggerSpec`` and ``Trigger``, beside ``http``, with the shared fields
(``id``, ``function``, ``enabled``, ``created``, ``modified``) spelt the same way.
"""

from __future__ import annotations

import re
from typing import Literal, cast

import msgspec
from msgspec import UNSET, UnsetType

from schemas.base import StoredStruct, Struct
from schemas.errors import InvalidRequest, detail
from schemas.ids import DEFAULT_ALIAS

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


class SubjectTriggerSpec(Struct, tag_field="type", tag="subject"):
    """The create body of a subject trigger (``type: "subject"``): every message on ``source``
    (wildcards allowed) becomes an Async invocation of the function's ``alias``."""

    source: str
    function: FunctionTarget
    alias: str = DEFAULT_ALIAS
    enabled: bool = True


# The bodies POST /compute/triggers takes, told apart by ``type`` (and the type to decode one
# with: mypy takes a union for ``type[T]`` only spelt this way).
TriggerSpec = HttpTriggerSpec | SubjectTriggerSpec
TRIGGER_SPEC = cast("type[TriggerSpec]", TriggerSpec)


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


class SubjectTrigger(StoredStruct, tag_field="type", tag="subject"):
    """A subject trigger as stored and shown."""

    id: str
    function: FunctionTarget
    source: str
    alias: str = DEFAULT_ALIAS
    enabled: bool = True
    created: int = 0
    modified: int = 0


# Every kind of stored trigger, told apart by ``type``.
Trigger = HttpTrigger | SubjectTrigger
TRIGGER = cast("type[Trigger]", Trigger)


MAX_SUBJECT_CHARS = 256
# The embedded server's APP account shares subjects of at most this many tokens with computebus
# (bus/nats_users.py says why), so a longer source could never hear a message.
MAX_SOURCE_TOKENS = 6
# Subjects a trigger may not take: computebus's own, the server's ($JS, $SYS, $KV, ... and the
# reply subjects) and what the accounts import (bus/nats_users.py).
RESERVED_SUBJECTS = ("ms.compute.>", "computebus.>", "$*.>", "_INBOX.>", "_R_.>", "_CB_INBOX.>")


def subjects_collide(a: str, b: str) -> bool:
    """Whether some subject matches both ``a`` and ``b`` (NATS wildcards ``*`` and ``>``; and
    ``$*``, ours, for any token that starts with ``$``)."""
    x, y = a.split("."), b.split(".")
    for i in range(max(len(x), len(y))):
        s = x[i] if i < len(x) else None
        t = y[i] if i < len(y) else None
        if s == ">" or t == ">":
            return s is not None and t is not None
        if s is None or t is None:
            return False
        if s != t and "*" not in (s, t) and not _dollar_match(s, t):
            return False
    return True


def _dollar_match(s: str, t: str) -> bool:
    return (t == "$*" and s.startswith("$")) or (s == "$*" and t.startswith("$"))


def check_source(source: str) -> str:
    """``source`` as a subject a trigger may take; a 400 naming /source."""
    tokens = source.split(".")
    reason = None
    if not source or len(source) > MAX_SUBJECT_CHARS:
        reason = f"must be a subject of 1 to {MAX_SUBJECT_CHARS} characters"
    elif any(not t or any(c.isspace() for c in t) for t in tokens):
        reason = "must be a NATS subject: non-empty tokens separated by '.', no spaces"
    elif len(tokens) > MAX_SOURCE_TOKENS:
        reason = f"may have at most {MAX_SOURCE_TOKENS} tokens"
    elif any(("*" in t or ">" in t) and len(t) > 1 for t in tokens) or ">" in tokens[:-1]:
        reason = "wildcards are whole tokens: '*' anywhere, '>' only last"
    else:
        taken = [r for r in RESERVED_SUBJECTS if subjects_collide(source, r)]
        if not taken:
            return source
        reason = f"overlaps {taken[0]}, which computebus or the server keeps for itself"
    raise InvalidRequest(f"/source: {source!r} {reason}", [detail("/source", reason)])


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
