"""The control plane between the API and the workers: ping (who is there, with what sandbox
and runtimes), probe (can a revision's handler load) and registry sync (a function record just
written, handed to every worker before the KV watch brings it).

Stored-style structs (unknown fields tolerated): during a rolling upgrade an API and a worker
of different versions must still understand each other.
"""

from __future__ import annotations

import msgspec

from schemas.base import StoredStruct

HEARTBEAT_S = 0.5  # how often a worker says it is alive (the API's worker watch waits 3 of them)
# A worker says it took a sync call (Compute-Taken) once the call has run this long: most calls
# are answered sooner, and the answer says it for free.
TAKEN_AFTER_S = 0.5


class Alive(StoredStruct):
    """A worker's heartbeat, and its note that it took a sync invocation, with how often its
    connection was lost so far (an answer sent around a reconnect may have been lost)."""

    worker: str
    reconnects: int = 0


class WorkerInfo(StoredStruct):
    """A worker's answer to a ping."""

    worker: str
    isolation: str
    isolation_gaps: list[str] = msgspec.field(default_factory=list)
    runtimes: dict[str, str] = msgspec.field(default_factory=dict)  # name -> version
    metrics: str = ""  # the URL of its /metrics, when it serves one


class ProbeRequest(StoredStruct):
    collection_topic: str
    service: str
    revision: int


# Blocker reasons beside the error codes.
RUNTIME_UNAVAILABLE = "runtime_unavailable"  # the worker that checked has no such runtime
NOT_CHECKED = "not_checked"  # no worker answered the load check


class Blocker(StoredStruct):
    """Why a revision cannot serve invocations: an error code, or one of the reasons above."""

    reason: str
    message: str


class ProbeReply(StoredStruct):
    blockers: list[Blocker]


class RegistrySync(StoredStruct):
    """A function record as written to the registry, at its KV sequence."""

    collection_topic: str
    service: str
    seq: int
    record: msgspec.Raw


class SyncAck(StoredStruct):
    ok: bool = True
