"""Invocation bodies, the handler context, and the monitor record kept for every invocation."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from schemas.base import StoredStruct, Struct
from schemas.errors import ComputeError

InvocationType = Literal["RequestResponse", "Async"]
Status = Literal["queued", "running", "succeeded", "failed"]


class InvokeRequest(Struct):
    payload: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))
    invocation_type: InvocationType = "RequestResponse"


class TriggerContext(Struct):
    """``context.trigger`` when a subject trigger made the invocation: the trigger's id, the
    subject the message was published on and the message's headers (but the server's ``Nats-*``
    and computebus's ``Compute-*`` ones)."""

    id: str
    subject: str
    headers: dict[str, str]
    type: str = "subject"


class HandlerContext(Struct):
    invocation_id: str
    collection_topic: str
    service: str
    revision: int
    deadline_ms: int
    memory_mb: int
    # The invocation's W3C trace: its id, and the traceparent (and tracestate, "" for none) of
    # the worker's span around this run, for a handler that continues the trace.
    trace_id: str = ""
    traceparent: str = ""
    tracestate: str = ""
    trigger: TriggerContext | UnsetType = UNSET


class CallerInfo(StoredStruct):
    """Who made an invocation: an API token over HTTP (its id and name), anyone (a function
    open to ``public_invoke``), or a NATS client (``nats``) with the bus user it connected as
    when the server said so: ``client``, or a token's ``cbt_<id>`` with ``token_id``. A call
    from inside the computebus account, and an Async one over NATS (JetStream does not keep the
    server's caller header), name no user."""

    via: Literal["token", "public", "nats"]
    token_id: str | UnsetType = UNSET
    name: str | UnsetType = UNSET
    user: str | UnsetType = UNSET


class MonitorRecord(StoredStruct):
    invocation_id: str
    collection_topic: str
    service: str
    revision: int
    status: Status
    started: int
    invocation_type: InvocationType = "RequestResponse"
    duration_ms: float = 0.0
    logs: str = ""
    logs_truncated: bool = False
    worker: str = ""  # the worker that ran it
    error_code: str | UnsetType = UNSET
    error_message: str | UnsetType = UNSET
    error_details: list[dict[str, Any]] | UnsetType = UNSET
    input: msgspec.Raw | UnsetType = UNSET
    output: msgspec.Raw | UnsetType = UNSET
    # store_payload was on, but input and output did not fit in one bus message beside the rest.
    payload_omitted: bool = False
    # Async only: runs made so far (a queued record after a failure says which try comes next
    # by ``attempts + 1``), and the caller's Compute-Deadline (unix ms).
    attempts: int = 0
    deadline: int | UnsetType = UNSET
    # Async with an Idempotency-Key: the payload's sha256, so the key cannot name another one.
    payload_sha256: str | UnsetType = UNSET
    caller: CallerInfo | UnsetType = UNSET
    # The W3C trace the invocation belongs to (the caller's traceparent, else a new one), to
    # join the record with spans and logs. Unset only in records of earlier versions.
    trace_id: str | UnsetType = UNSET
    # Async: the function's schedule whose tick this invocation is.
    schedule: str | UnsetType = UNSET
    # Async: the subject trigger whose message this invocation is (its id).
    trigger: str | UnsetType = UNSET

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed")

    def settled(self, error: ComputeError | None) -> MonitorRecord:
        """This record as final: ``failed`` with ``error``'s code, message and details, or
        ``succeeded``."""
        if error is None:
            return msgspec.structs.replace(self, status="succeeded")
        return msgspec.structs.replace(
            self,
            status="failed",
            error_code=error.code,
            error_message=error.message,
            error_details=error.details or UNSET,
        )


def async_record(
    invocation_id: str, ct: str, ft: str, revision: int, status: Status, started_ms: int
) -> MonitorRecord:
    """The record of an Async invocation not run yet (``queued``) or starting (``running``)."""
    return MonitorRecord(
        invocation_id=invocation_id,
        collection_topic=ct,
        service=ft,
        revision=revision,
        status=status,
        started=started_ms,
        invocation_type="Async",
    )


class DeadLetter(StoredStruct):
    """An Async invocation that failed for good, kept (with its payload) so it can be redriven."""

    invocation_id: str
    collection_topic: str
    service: str
    attempts: int
    error_code: str
    error_message: str
    failed_at: int  # unix ms
    # The invocation's own headers (alias, revision, timeout) and payload, to send it again.
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    payload: msgspec.Raw | UnsetType = UNSET
    # The payload was not JSON, or too big to keep beside the rest: it cannot be redriven.
    payload_omitted: bool = False


class DeadLetterView(Struct):
    """A dead letter as listed: without its payload (the monitor record keeps that, if asked)."""

    invocation_id: str
    attempts: int
    error_code: str
    error_message: str
    failed_at: int
    payload_omitted: bool = False


class Accepted(Struct):
    """The 202 body of an Async invoke or a redrive."""

    invocation_id: str
    status: Status
