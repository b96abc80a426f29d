"""Async invocations over HTTP: submit one to the durable queue, list dead letters, redrive one.

A submit answers 202 only once the queue's stream has stored the invocation. With an
``Idempotency-Key`` the invocation id is derived from the function and the key, so the same key
always names the same invocation: while its record lives the API answers with it and sends
nothing, and within the stream's dedupe window the stream itself drops a second copy.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time

import msgspec
import nats.errors
import nats.js.errors
from starlette.requests import Request
from starlette.responses import Response

from bus.caller_seal import CallerSeal
from executor.api.access import DEPLOY, READ, caller_info, guarded_route
from executor.api.context import ApiContext, ctx_of, function_ref
from executor.api.responses import body, query_int, results
from schemas.errors import (
    ComputeError,
    Conflict,
    FunctionNotFound,
    InvalidRequest,
    NotFound,
    Overloaded,
    Unavailable,
    detail,
)
from schemas.functions import FunctionRecord
from schemas.headers import (
    H_ALIAS,
    H_DEADLINE,
    H_INVOCATION_ID,
    H_MSG_ID,
    H_PAYLOAD_SHA256,
    H_RECORDED,
    H_REVISION,
    H_TIMEOUT,
    deadline_ms,
    positive_int,
)
from schemas.ids import is_invocation_id
from schemas.invocations import Accepted, DeadLetter, DeadLetterView, MonitorRecord, async_record
from schemas.trace_context import TraceContext, trace_of

log = logging.getLogger("computebus.api")

IDEMPOTENCY_KEY = "Idempotency-Key"
MAX_KEY_LENGTH = 255
_RECORD_WAITS = 20
_RECORD_WAIT_S = 0.05


def idempotent_id(seal: CallerSeal, ct: str, ft: str, key: str) -> str:
    """The invocation id that ``key`` names for this function (the same key, the same id),
    keyed with the roles' secret so that no NATS client can take the id first."""
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidRequest(
            f"header {IDEMPOTENCY_KEY} must be 1 to {MAX_KEY_LENGTH} printable characters",
            [detail(IDEMPOTENCY_KEY, f"1 to {MAX_KEY_LENGTH} printable characters")],
        )
    return seal.keyed_id(ct, ft, key)


async def submit(
    request: Request,
    ct: str,
    ft: str,
    payload: bytes,
    invocation_id: str,
    *,
    alias: str | None,
    revision: int | None,
    trace: TraceContext,
) -> tuple[Accepted, str]:
    """Queue one Async invocation; the 202 body and the invocation id it runs under."""
    ctx = ctx_of(request)
    key = request.headers.get(IDEMPOTENCY_KEY)
    if key is not None:
        invocation_id = idempotent_id(ctx.seal, ct, ft, key)
    function, rev = await ctx.view.resolve(ct, ft, alias=alias, revision=revision)
    options = {H_INVOCATION_ID: invocation_id, H_MSG_ID: invocation_id, H_RECORDED: "1"}
    options.update(trace.headers())
    if alias is not None:
        options[H_ALIAS] = alias
    if revision is not None:
        options[H_REVISION] = str(revision)
    if timeout := request.headers.get(H_TIMEOUT):
        positive_int({H_TIMEOUT: timeout}, H_TIMEOUT)
        options[H_TIMEOUT] = timeout
    if deadline := deadline_ms({H_DEADLINE: request.headers.get(H_DEADLINE, "")}):
        options[H_DEADLINE] = str(deadline)
    digest: str | None = None
    if key is not None:
        digest = hashlib.sha256(payload).hexdigest()
        options[H_PAYLOAD_SHA256] = digest
        known = await ctx.monitor.get(ct, ft, invocation_id)
        if known is not None:
            _same_payload(known, digest, key)
            return Accepted(invocation_id=invocation_id, status=known.status), invocation_id
    caller = caller_info(request)
    options.update(ctx.seal.headers(invocation_id, caller))
    queued = async_record(invocation_id, ct, ft, rev.number, "queued", int(time.time() * 1000))
    queued.caller = caller
    queued.trace_id = trace.trace_id
    if H_DEADLINE in options:
        queued.deadline = int(options[H_DEADLINE])
    if digest is not None:
        queued.payload_sha256 = digest
    if function.monitor_config.store_payload:
        queued.input = msgspec.Raw(payload)
    if await _enqueue(ctx, ct, ft, payload, options):  # the stream had it already
        known = await _record_soon(ctx, ct, ft, invocation_id)
        if known is not None and digest is not None and key is not None:
            _same_payload(known, digest, key)
        status = known.status if known is not None else "queued"
        return Accepted(invocation_id=invocation_id, status=status), invocation_id
    # Only if no worker wrote first (it may already be running it).
    try:
        await ctx.monitor.write_expecting(queued, function.monitor_config.ttl, 0)
    except Exception as exc:  # stored in the queue all the same; the worker writes the rest
        log.warning("queued record of %s not written: %s", invocation_id, exc)
    return Accepted(invocation_id=invocation_id, status="queued"), invocation_id


async def _record_soon(
    ctx: ApiContext, ct: str, ft: str, invocation_id: str
) -> MonitorRecord | None:
    """The record of an invocation whose first submit is a moment ahead of this one (it writes
    ``queued`` right after the stream stores it), waiting for it briefly."""
    for _ in range(_RECORD_WAITS):
        known = await ctx.monitor.get(ct, ft, invocation_id)
        if known is not None:
            return known
        await asyncio.sleep(_RECORD_WAIT_S)
    return None


def _same_payload(known: MonitorRecord, digest: str, key: str) -> None:
    if isinstance(known.payload_sha256, str) and known.payload_sha256 != digest:
        raise Conflict(
            f"{IDEMPOTENCY_KEY} {key!r} was used for another payload (invocation "
            f"{known.invocation_id}); use a new key for a new invocation",
            [detail(IDEMPOTENCY_KEY, "already used with another payload")],
        )


async def _enqueue(
    ctx: ApiContext, ct: str, ft: str, payload: bytes, headers: dict[str, str]
) -> bool:
    """Store the invocation in the queue; True if the stream already had this message id."""
    try:
        ack = await ctx.queue.submit(ct, ft, payload, headers)
    except nats.js.errors.APIError as exc:
        if "maximum" in (exc.description or ""):  # the queue is full (discard new)
            raise Overloaded("the async queue is full; retry later") from None
        raise Unavailable(f"the async queue refused the invocation: {exc.description}") from None
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.errors.Error):
        raise Unavailable(
            "the async queue did not confirm storing the invocation; it is safe to retry "
            f"with the same {IDEMPOTENCY_KEY}"
        ) from None
    return bool(ack.duplicate)


async def list_dead_letters(request: Request) -> Response:
    ctx = ctx_of(request)
    ct, ft = await function_ref(request)
    limit = query_int(request, "limit", 50, lo=1, hi=1000)
    offset = query_int(request, "offset", 0, lo=0, hi=1_000_000)
    page = await ctx.dead_letters.list(ct, ft, limit=limit, offset=offset)
    views = [
        DeadLetterView(
            invocation_id=letter.invocation_id,
            attempts=letter.attempts,
            error_code=letter.error_code,
            error_message=letter.error_message,
            failed_at=letter.failed_at,
            payload_omitted=letter.payload_omitted,
        )
        for letter in page.items
    ]
    return results(views, page.total, complete=page.complete)


async def retry(request: Request) -> Response:
    """Redrive a dead letter: a fresh set of attempts under the same invocation id."""
    ctx = ctx_of(request)
    ct, ft = await function_ref(request)
    invocation_id = request.path_params["id"]
    function = await ctx.view.function(ct, ft)
    if function is None:
        raise FunctionNotFound(f"function {ct}/{ft} does not exist")
    found = None
    if is_invocation_id(invocation_id):
        found = await ctx.dead_letters.get(ct, ft, invocation_id)
    if found is None:
        record = (
            await ctx.monitor.get(ct, ft, invocation_id)
            if is_invocation_id(invocation_id)
            else None
        )
        if record is not None and record.status != "failed":
            raise Conflict(
                f"invocation {invocation_id} is {record.status}; only a failed invocation can be "
                "retried"
            )
        raise NotFound(
            f"no dead letter for invocation {invocation_id} of {ct}/{ft} (only Async "
            "invocations that failed for good can be retried, while their dead letter is kept)"
        )
    letter, letter_seq = found
    if isinstance(letter.payload, msgspec.UnsetType):
        raise Conflict(
            f"the dead letter of {invocation_id} kept no payload (it was not JSON, or too big to "
            "keep); it cannot be sent again"
        )
    payload = bytes(letter.payload)
    previous, seq = await ctx.monitor.current(ct, ft, invocation_id)
    if previous is not None and previous.status != "failed":
        # An earlier retry got through (its dead letter outlived it): nothing to send again.
        raise Conflict(
            f"invocation {invocation_id} is {previous.status} (an earlier retry got through); "
            "only a failed invocation can be retried"
        )
    # Queued before it is sent: a worker skips an invocation whose record is final.
    revision = previous.revision if previous is not None else 0
    queued = async_record(invocation_id, ct, ft, revision, "queued", int(time.time() * 1000))
    queued.caller = caller_info(request)
    queued.trace_id = trace_of(letter.headers, invocation_id, stable=True).trace_id
    if function.monitor_config.store_payload:
        queued.input = letter.payload
    if digest := letter.headers.get(H_PAYLOAD_SHA256):
        queued.payload_sha256 = digest
    written = await ctx.monitor.write_expecting(queued, function.monitor_config.ttl, seq)
    if written is None:  # a concurrent retry of the same invocation won
        raise Conflict(f"invocation {invocation_id} is being retried already")
    # A message id of its own (the first send may still be in the dedupe window), named after
    # this queued record, so a retry after a failed send is a new message and not a duplicate.
    headers = {
        **letter.headers,
        H_INVOCATION_ID: invocation_id,
        H_MSG_ID: f"{invocation_id}.redrive.{written[1]}",
        H_RECORDED: "1",
        **ctx.seal.headers(invocation_id, caller_info(request)),  # the redrive's caller
    }
    try:
        await _enqueue(ctx, ct, ft, payload, headers)
    except ComputeError:
        await _restore(ctx, previous or _failed_record(letter), function, written[1])
        raise
    try:
        await ctx.dead_letters.remove(ct, ft, invocation_id, letter_seq)
    except Exception as exc:  # sent all the same; the stale letter is refused above if retried
        log.warning("dead letter of %s not removed: %s", invocation_id, exc)
    return body(Accepted(invocation_id=invocation_id, status="queued"), 202)


def _failed_record(letter: DeadLetter) -> MonitorRecord:
    """A failed record rebuilt from a dead letter (for when the record itself has expired)."""
    record = async_record(
        letter.invocation_id, letter.collection_topic, letter.service, 0, "failed", letter.failed_at
    )
    record.attempts = letter.attempts
    record.error_code, record.error_message = letter.error_code, letter.error_message
    return record


async def _restore(
    ctx: ApiContext, previous: MonitorRecord, function: FunctionRecord, seq: int
) -> None:
    """Put the failed record back after a redrive that could not be queued (if a worker took
    the message after all, its record is newer and this does nothing; if not, the dead letter is
    still there to retry)."""
    try:
        await ctx.monitor.write_expecting(previous, function.monitor_config.ttl, seq)
    except Exception as exc:
        log.warning("could not restore the record of %s: %s", previous.invocation_id, exc)


routes = [
    guarded_route("GET", "/compute/functions/{ct}/{ft}/dead-letters", READ, list_dead_letters),
    guarded_route("POST", "/compute/functions/{ct}/{ft}/invocations/{id}/retry", DEPLOY, retry),
]
