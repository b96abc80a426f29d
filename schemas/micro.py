"""NATS micro service discovery (ADR-32): the ping, info and stats answers, and the pure rules
around them (an instance id that is one subject token, a list cut to fit one message).

computebus answers ``$SRV`` itself (``bus/service_discovery.py``) instead of through nats-py's
``nats.micro``, whose endpoints would subscribe on their own with their own queue group: the
function subjects, their queue group and their error headers stay what they are; only the
answers take ADR-32's shapes. ADR-32 metadata is string to string, so anything else in it
(a JSON Schema, a number) is a JSON string.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from schemas.base import Struct
from schemas.codec import encode

PING_TYPE = "io.nats.micro.v1.ping_response"
INFO_TYPE = "io.nats.micro.v1.info_response"
STATS_TYPE = "io.nats.micro.v1.stats_response"
UNKNOWN_VERSION = "0.0.0+unknown"  # ADR-32 wants semver; a checkout without metadata has none

_NOT_IN_TOKEN = re.compile(r"[^A-Za-z0-9_-]")


class PingResponse(Struct, kw_only=True):
    type: str = PING_TYPE
    name: str
    id: str
    version: str
    metadata: dict[str, str]


class EndpointInfo(Struct):
    name: str
    subject: str
    queue_group: str
    metadata: dict[str, str]


class InfoResponse(Struct, kw_only=True):
    type: str = INFO_TYPE
    name: str
    id: str
    version: str
    description: str
    metadata: dict[str, str]
    endpoints: list[EndpointInfo]


class EndpointStats(Struct):
    name: str
    subject: str
    queue_group: str
    num_requests: int
    num_errors: int
    last_error: str
    processing_time: int  # nanoseconds, all requests together
    average_processing_time: int  # nanoseconds
    data: dict[str, Any] | None = None  # nats-py's reader wants the key, null or not


class StatsResponse(Struct, kw_only=True):
    type: str = STATS_TYPE
    name: str
    id: str
    version: str
    started: str  # RFC 3339, UTC
    metadata: dict[str, str]
    endpoints: list[EndpointStats]


def instance_id(worker_id: str) -> str:
    """``worker_id`` as one subject token (``$SRV.PING.<name>.<id>``): a host name's dots, or
    anything else a token or ADR-32's name rule refuses, become ``_``."""
    return _NOT_IN_TOKEN.sub("_", worker_id) or "_"


def rfc3339(moment: datetime) -> str:
    """``2024-05-01T12:00:00.123456Z`` (what nats-py's and nats.go's readers both take)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_Item = TypeVar("_Item", EndpointInfo, EndpointStats)


def fit(items: Sequence[_Item], budget: int) -> list[_Item]:
    """The longest head of ``items`` whose JSON takes at most ``budget`` bytes (an answer must
    fit in one message: a registry of thousands of functions with schemas may not)."""
    used = 2  # the brackets
    for count, item in enumerate(items):
        used += len(encode(item)) + (1 if count else 0)
        if used > budget:
            return list(items[:count])
    return list(items)


def average_ns(total_ns: int, requests: int) -> int:
    return total_ns // requests if requests else 0
