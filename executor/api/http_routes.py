"""Route: ``/r/<path>``, any method: the HTTP route that matches (longest path first) invokes its
function synchronously with the request as a Lambda function-URL event, and the result becomes
the answer. Not on the hot path: ``hot_path.py`` takes only ``POST .../invoke``."""

from __future__ import annotations

import time

from msgspec import UNSET
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bus.streams import REPLY_HEADROOM
from executor.api.access import CALLER, Access, caller_info
from executor.api.context import ctx_of
from executor.api.invocations import call_worker, caller_trace
from executor.api.responses import error_response, read_body
from executor.functions.triggers import pick_revision
from executor.tracing import SPAN_INVOKE
from schemas.codec import encode, json_decoder
from schemas.errors import ComputeError, NotFound, PayloadTooLarge, detail
from schemas.headers import new_invocation_id
from schemas.lambda_url import HttpRequest, http_answer, lambda_event
from schemas.trace_context import TraceContext
from schemas.triggers import HTTP_METHODS, HttpTrigger

PREFIX = "/r"
H_COMPUTE_REVISION = "X-Compute-Revision"
# A token sent to a route that needs one is computebus's, not the function's: not in the event.
_TOKEN_HEADERS = frozenset({b"authorization", b"x-api-key"})


async def serve_route(request: Request) -> Response:
    started = time.perf_counter()
    ctx = ctx_of(request)
    invocation_id = new_invocation_id()
    headers = {"X-Invocation-Id": invocation_id}
    span = ctx.tracing.start(SPAN_INVOKE, caller_trace(request), kind="server")
    function: tuple[str, str] | None = None
    revision, code, failed = 0, "ok", None
    try:
        path = request.scope["path"][len(PREFIX) :] or "/"
        route = ctx.triggers.routes.match(request.method, path)
        if route is None:
            raise NotFound(f"no HTTP route {request.method} {path}")
        function = (route.function.collection_topic, route.function.service)
        # The event shows the path as sent (percent escapes kept), as Lambda's rawPath does.
        raw: bytes | None = request.scope.get("raw_path")
        sent = (raw.decode("latin-1")[len(PREFIX) :] or "/") if raw else path
        response, revision = await _serve(
            request, route, sent, invocation_id, headers, span.context
        )
    except ComputeError as exc:
        failed, code = exc, exc.code
        response = error_response(exc, headers)
    ctx.metrics.invoked(function, revision, "sync", code, time.perf_counter() - started)
    if ctx.tracing.enabled:
        answered: dict[str, str | int] = {
            "http.request.method": request.method,
            "http.route": "/r/{path}",
            "http.response.status_code": response.status_code,
            "computebus.invocation_id": invocation_id,
        }
        ctx.tracing.end(span, error=failed, attributes=answered)
    return response


async def _serve(
    request: Request,
    route: HttpTrigger,
    path: str,
    invocation_id: str,
    headers: dict[str, str],
    trace: TraceContext,
) -> tuple[Response, int]:
    ctx = ctx_of(request)
    if not route.enabled:
        raise NotFound(f"the HTTP route {route.method} {route.path} is disabled")
    ct, ft = route.function.collection_topic, route.function.service
    access: Access = request.app.state.access
    request.scope[CALLER] = await access.route_caller(request, ct, public=route.public)
    ctx.rate_limits.take_route(route.id, route.path, route.limits)
    limited = ctx.view.cached_function(ct, ft)
    if limited is not None:
        ctx.rate_limits.take(ct, ft, limited.limits)
    data = await read_body(request, ctx.settings.max_payload_bytes)
    number = None if route.traffic is UNSET else pick_revision(route.traffic, invocation_id)
    _, rev = await ctx.view.resolve(ct, ft, revision=number)
    headers[H_COMPUTE_REVISION] = str(rev.number)
    event = lambda_event(
        HttpRequest(
            method=request.method,
            path=path,
            query=request.scope["query_string"],
            headers=[
                (name, value)
                for name, value in request.scope["headers"]
                if route.public or name not in _TOKEN_HEADERS
            ],
            body=data,
            source_ip=request.client.host if request.client else "",
            request_id=invocation_id,
        )
    )
    payload = encode(event)
    limit = min(ctx.settings.max_payload_bytes, ctx.nc.max_payload - REPLY_HEADROOM)
    if len(payload) > limit:
        raise PayloadTooLarge(
            f"the request's event is {len(payload)} bytes, over the {limit}-byte limit",
            [detail("/body", f"the event (body in base64 for binary) at most {limit} bytes")],
        )
    timeout_ms = None if route.timeout is UNSET else str(min(route.timeout, rev.timeout))
    result = await call_worker(
        ctx, (ct, ft, rev), payload, invocation_id, caller_info(request), trace, timeout_ms
    )
    answer = http_answer(json_decoder.decode(result))
    response = Response(answer.body, answer.status)
    response.raw_headers += [(n.encode("latin-1"), v.encode("latin-1")) for n, v in answer.headers]
    response.raw_headers += [(n.lower().encode(), v.encode()) for n, v in headers.items()]
    return response, rev.number


# Not guarded by a rule: each route says whether it takes a token (access.ROUTED_PATHS).
routes = [Route(f"{PREFIX}/{{path:path}}", serve_route, methods=list(HTTP_METHODS))]
