"""Routes: invoke a function (over NATS, to a worker) and read its monitor records."""

from __future__ import annotations

import time

import msgspec
import nats.errors
from starlette.requests import Request
from starlette.responses import Response

from bus import subjects
from bus.streams import REPLY_HEADROOM
from executor.api import async_invocations
from executor.api.access import INVOKE, READ, caller_info, guarded_route
from executor.api.context import ApiContext, ctx_of, function_ref
from executor.api.responses import body, error_response, query_int, raw_body, read_body, results
from executor.tracing import SPAN_INVOKE
from schemas.codec import decode_as, json_decoder, nested_too_deeply
from schemas.errors import (
    ComputeError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    Timeout,
    Unavailable,
    detail,
    error_from_code,
)
from schemas.functions import Revision
from schemas.headers import (
    H_ERROR_CODE,
    H_INVOCATION_ID,
    H_REVISION,
    H_TIMEOUT,
    new_invocation_id,
)
from schemas.ids import is_invocation_id
from schemas.invocations import CallerInfo, InvokeRequest
from schemas.trace_context import (
    TRACEPARENT,
    TRACESTATE,
    TraceContext,
    new_trace_id,
    parse_traceparent,
)

# Time the API waits past a function's own timeout for the worker's answer.
REPLY_GRACE_S = 5.0
STATUSES = ("queued", "running", "succeeded", "failed")


def payload_bytes(raw: msgspec.Raw) -> bytes:
    """The payload as JSON; a JSON string holds the JSON document itself, as Quiva sends it."""
    data = bytes(raw)
    if not data.startswith(b'"'):
        return data
    try:
        text: str = json_decoder.decode(data)
        json_decoder.decode(text)
        return text.encode()
    except (msgspec.DecodeError, UnicodeError) as exc:  # bad UTF-8, a lone surrogate
        raise InvalidRequest(
            f"/payload: a string payload must hold JSON ({exc})",
            [detail("/payload", f"a string payload must hold JSON: {exc}")],
        ) from None
    except RecursionError:
        raise nested_too_deeply("/payload") from None


class _Labels:
    """What an invoke's metrics are labelled with, filled in as the request is read."""

    __slots__ = ("function", "mode", "revision")

    def __init__(self) -> None:
        self.function: tuple[str, str] | None = None
        self.revision = 0
        self.mode = "sync"


async def invoke(request: Request) -> Response:
    started = time.perf_counter()
    invocation_id = new_invocation_id()
    headers = {"X-Invocation-Id": invocation_id}
    labels = _Labels()
    tracing = ctx_of(request).tracing
    span = tracing.start(SPAN_INVOKE, caller_trace(request), kind="server")
    failed: ComputeError | None = None
    try:
        response, code = await _invoke(request, invocation_id, headers, labels, span.context)
    except ComputeError as exc:
        failed = exc
        response, code = error_response(exc, headers), exc.code
    ctx_of(request).metrics.invoked(
        labels.function, labels.revision, labels.mode, code, time.perf_counter() - started
    )
    if tracing.enabled:
        answered: dict[str, str | int] = {
            "http.request.method": "POST",
            "http.route": "/compute/functions/{ct}/{ft}/invoke",
            "http.response.status_code": response.status_code,
            "computebus.invocation_id": headers["X-Invocation-Id"],
        }
        tracing.end(span, error=failed, attributes=answered)
    return response


def caller_trace(request: Request) -> TraceContext:
    """The trace the caller's ``traceparent`` (and ``tracestate``) continue, else a new one: a
    malformed ``traceparent`` is ignored, as the W3C spec says, never an error."""
    given = request.headers.get(TRACEPARENT)
    if given is not None:
        found = parse_traceparent(given, ",".join(request.headers.getlist(TRACESTATE)))
        if found is not None:
            return found
    return TraceContext(new_trace_id())


def _invoke_request(data: bytes) -> InvokeRequest:
    if not data.strip():
        return InvokeRequest()
    try:
        return decode_as(InvokeRequest, data)
    except InvalidRequest as exc:
        where = exc.details[0] if exc.details else {}
        not_an_object = where.get("path") == "/"
        unknown_top_field = str(where.get("path", "")).count("/") == 1 and (
            where.get("message") == "is not a known field"
        )
        if not_an_object or unknown_top_field:
            raise InvalidRequest(
                f'{exc.message} (an invoke body is {{"payload": <the event>}}, with '
                '"invocation_type" optional: did the event miss its "payload" wrapper?)',
                exc.details,
            ) from None
        raise


async def _invoke(
    request: Request,
    invocation_id: str,
    headers: dict[str, str],
    labels: _Labels,
    trace: TraceContext,
) -> tuple[Response, str]:
    ctx = ctx_of(request)
    ct, ft = await function_ref(request)
    labels.function = (ct, ft)
    limited = ctx.view.cached_function(ct, ft)
    if limited is not None:
        ctx.rate_limits.take(ct, ft, limited.limits)
    data = await read_body(request, ctx.settings.max_payload_bytes + REPLY_HEADROOM)
    req = _invoke_request(data)
    payload = payload_bytes(req.payload)
    limit = min(ctx.settings.max_payload_bytes, ctx.nc.max_payload - REPLY_HEADROOM)
    if len(payload) > limit:
        raise PayloadTooLarge(
            f"payload is {len(payload)} bytes, over the {limit}-byte limit",
            [detail("/payload", f"at most {limit} bytes")],
        )
    alias: str | None = None
    revision: int | None = None
    if request.scope["query_string"]:  # parsing an empty query string still costs
        alias = request.query_params.get("alias") or None
        revision = query_int(request, "revision", 0, lo=0, hi=1_000_000_000) or None
    if req.invocation_type == "Async":
        labels.mode = "async"
        accepted, invocation_id = await async_invocations.submit(
            request, ct, ft, payload, invocation_id, alias=alias, revision=revision, trace=trace
        )
        headers["X-Invocation-Id"] = invocation_id
        return body(accepted, 202, headers), "accepted"
    _, rev = await ctx.view.resolve(ct, ft, alias=alias, revision=revision)
    labels.revision = rev.number
    # The resolved number, not the alias: this API's view already has its own alias moves, so
    # a promote or a rollback made here takes effect on the very next invocation.
    result = await call_worker(
        ctx,
        (ct, ft, rev),
        payload,
        invocation_id,
        caller_info(request),
        trace,
        request.headers.get(H_TIMEOUT),
    )
    return raw_body(result, 200, headers), "ok"


async def call_worker(
    ctx: ApiContext,
    target: tuple[str, str, Revision],
    payload: bytes,
    invocation_id: str,
    caller: CallerInfo,
    trace: TraceContext,
    timeout_ms: str | None,
) -> bytes:
    """A sync invocation of one revision on a worker: its result, or the error it failed with."""
    ct, ft, rev = target
    call_headers = {
        H_INVOCATION_ID: invocation_id,
        H_REVISION: str(rev.number),
        **ctx.seal.headers(invocation_id, caller),
        **trace.headers(),
    }
    if timeout_ms:
        call_headers[H_TIMEOUT] = timeout_ms
    try:
        reply = await ctx.workers.request(
            subjects.function_subject(ct, ft),
            payload,
            call_headers,
            timeout_s=rev.timeout / 1000 + REPLY_GRACE_S,
        )
    except nats.errors.NoRespondersError:
        raise Unavailable("no worker is running; start one with `computebus worker`") from None
    except nats.errors.TimeoutError:
        raise Timeout("no answer from the worker in time (it may have died)") from None
    if reply.headers and H_ERROR_CODE in reply.headers:
        wire = json_decoder.decode(reply.data)
        raise error_from_code(wire.get("code", ""), wire.get("error", ""), wire.get("details"))
    data: bytes = reply.data
    return data


async def list_invocations(request: Request) -> Response:
    ctx = ctx_of(request)
    ct, ft = await function_ref(request)
    status = request.query_params.get("status") or None
    if status is not None and status not in STATUSES:
        raise InvalidRequest(
            f"status must be one of {', '.join(STATUSES)}",
            [detail("?status", f"must be one of {', '.join(STATUSES)}")],
        )
    limit = query_int(request, "limit", 50, lo=1, hi=1000)
    offset = query_int(request, "offset", 0, lo=0, hi=1_000_000)
    page = await ctx.monitor.list(ct, ft, status=status, limit=limit, offset=offset)
    return results(page.items, page.total, complete=page.complete)


async def get_invocation(request: Request) -> Response:
    ctx = ctx_of(request)
    ct, ft = await function_ref(request)
    invocation_id = request.path_params["id"]
    record = None
    if is_invocation_id(invocation_id):
        record = await ctx.monitor.get(ct, ft, invocation_id)
    if record is None:
        raise NotFound(
            f"no record of invocation {invocation_id} of {ct}/{ft} (it may have expired)"
        )
    return body(record)


routes = [
    guarded_route("POST", "/compute/functions/{ct}/{ft}/invoke", INVOKE, invoke),
    guarded_route("GET", "/compute/functions/{ct}/{ft}/invocations", READ, list_invocations),
    guarded_route("GET", "/compute/functions/{ct}/{ft}/invocations/{id}", READ, get_invocation),
    *async_invocations.routes,
]
