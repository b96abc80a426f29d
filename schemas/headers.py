"""The headers an invocation travels with over NATS, and turning them into a ``Call``.

Sync requests (``ms.compute.<ct>.function.<ft>``) and async messages (``... .async``) take the
same options, so both paths read them here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from schemas.errors import ComputeError, InvalidRequest, Overloaded
from schemas.ids import INVOCATION_ID, is_invocation_id
from schemas.invocations import CallerInfo, InvocationType, TriggerContext
from schemas.trace_context import TRACEPARENT, TRACESTATE, TraceContext, trace_of

H_ALIAS = "Compute-Alias"
H_REVISION = "Compute-Revision"
H_TIMEOUT = "Compute-Timeout-Ms"
H_DEADLINE = "Compute-Deadline"  # Async: unix ms after which a still-queued invocation expires
H_INVOCATION_ID = "Compute-Invocation-Id"
H_RECORDED = "Compute-Recorded"  # Async: the API wrote a queued record for it (read it first)
H_PAYLOAD_SHA256 = "Compute-Payload-Sha256"  # Async with an Idempotency-Key: what the key named
H_CALLER = "Compute-Caller"  # who called (set by the API), and its seal (bus/caller_seal.py)
H_CALLER_SEAL = "Compute-Caller-Seal"
H_TAKEN = "Compute-Taken"  # sync: where the worker that takes the call says so (api/worker_watch)
H_REFUSED_BY = "Compute-Refused-By"  # the workers that had no room for it (worker/overflow.py)
H_HOPS = "Compute-Hops"  # how many full workers handed a sync invocation on (worker/overflow.py)
H_NATS_CLIENT = "Nats-Request-Info"  # nats-server's, on a request from another account
H_MSG_ID = "Nats-Msg-Id"
H_STREAM_SOURCE = "Nats-Stream-Source"  # the server's, on a copy one stream sourced from another
# nats-server's message schedules (ADR-51): what a schedule message carries, and what the server
# stamps on each message it produces from one (the schedule's subject, and its next fire time).
H_SCHEDULE = "Nats-Schedule"
H_SCHEDULE_TARGET = "Nats-Schedule-Target"
H_SCHEDULE_TIME_ZONE = "Nats-Schedule-Time-Zone"
H_SCHEDULER = "Nats-Scheduler"
H_SCHEDULE_NEXT = "Nats-Schedule-Next"
H_EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
H_ERROR = "Nats-Service-Error"
H_ERROR_CODE = "Nats-Service-Error-Code"
H_RETRY_AFTER = "Retry-After"


@dataclass(frozen=True)
class Call:
    """One invocation as the worker runs it (built here from a message and its headers)."""

    collection_topic: str
    service: str
    payload: bytes
    invocation_id: str
    alias: str | None = None
    revision: int | None = None
    timeout_ms: int | None = None
    invocation_type: InvocationType = "RequestResponse"
    caller: CallerInfo | None = None
    # The caller's trace (``traceparent``), else a new one (see ``call_from_headers``).
    trace: TraceContext | None = None
    # Async: when the message was published (unix ns), where its wait began.
    queued_ns: int | None = None
    trigger: TriggerContext | None = None  # a subject trigger's message: what the handler sees


# The options an Async invocation keeps when it is dead-lettered and sent again (its trace
# too: a redrive continues it).
CALL_OPTIONS = (H_ALIAS, H_REVISION, H_TIMEOUT, H_PAYLOAD_SHA256, TRACEPARENT, TRACESTATE)


def new_invocation_id() -> str:
    return os.urandom(16).hex()


def check_invocation_id(value: str) -> str:
    if not is_invocation_id(value):
        raise InvalidRequest(
            f"{H_INVOCATION_ID} must match {INVOCATION_ID.pattern}",
            [{"path": H_INVOCATION_ID, "message": "not a valid invocation id"}],
        )
    return value


def error_headers(error: ComputeError, invocation_id: str) -> dict[str, str]:
    headers = {
        H_INVOCATION_ID: invocation_id,
        H_ERROR: error.message[:512],
        H_ERROR_CODE: str(error.status),
    }
    if isinstance(error, Overloaded):
        headers[H_RETRY_AFTER] = str(error.retry_after_s)
    return headers


def call_from_headers(
    ct: str,
    ft: str,
    payload: bytes,
    headers: dict[str, str],
    invocation_id: str,
    invocation_type: InvocationType = "RequestResponse",
    caller: CallerInfo | None = None,
    queued_ns: int | None = None,
) -> Call:
    """The call; its trace is the caller's ``traceparent`` when valid, else a new one: random,
    or for Async one that follows from the invocation id (the same for every attempt)."""
    return Call(
        collection_topic=ct,
        service=ft,
        payload=payload or b"null",
        invocation_id=check_invocation_id(invocation_id),
        alias=headers.get(H_ALIAS) or None,
        revision=positive_int(headers, H_REVISION),
        timeout_ms=positive_int(headers, H_TIMEOUT),
        invocation_type=invocation_type,
        caller=caller,
        trace=trace_of(headers, invocation_id, stable=invocation_type == "Async"),
        queued_ns=queued_ns,
    )


# Unix milliseconds before this (2001-09-09) are almost surely seconds sent by mistake.
_EARLIEST_DEADLINE_MS = 10**12


def deadline_ms(headers: dict[str, str]) -> int | None:
    """``Compute-Deadline`` as unix milliseconds, refusing what looks like seconds."""
    value = positive_int(headers, H_DEADLINE)
    if value is not None and value < _EARLIEST_DEADLINE_MS:
        raise InvalidRequest(
            f"header {H_DEADLINE} is unix milliseconds; {value} looks like seconds",
            [{"path": H_DEADLINE, "message": "must be unix milliseconds"}],
        )
    return value


def positive_int(headers: dict[str, str], name: str) -> int | None:
    raw = headers.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise InvalidRequest(
            f"header {name} must be a positive integer, got {raw!r}",
            [{"path": name, "message": "must be a positive integer"}],
        )
    return value
