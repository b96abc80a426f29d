"""Cross-origin calls from browsers: Starlette's CORSMiddleware, for the origins in
``COMPUTEBUS_CORS_ORIGINS`` (none by default: no CORS headers at all)."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from schemas.headers import H_ALIAS, H_DEADLINE, H_INVOCATION_ID, H_REVISION, H_TIMEOUT
from schemas.trace_context import TRACEPARENT, TRACESTATE

_METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE"]
_HEADERS = [
    "Authorization",
    "X-Api-Key",
    "Content-Type",
    "Idempotency-Key",
    H_ALIAS,
    H_REVISION,
    H_TIMEOUT,
    H_DEADLINE,
    H_INVOCATION_ID,
    TRACEPARENT,
    TRACESTATE,
]
_EXPOSED = ["X-Invocation-Id", "Retry-After", "WWW-Authenticate"]


class _NoContentPreflight(CORSMiddleware):
    """A preflight that passes answers 204, no body (Starlette's says 200 "OK")."""

    def preflight_response(self, request_headers: Headers) -> Response:
        answer = super().preflight_response(request_headers)
        if answer.status_code != 200:
            return answer
        headers = {k: v for k, v in answer.headers.items() if k.lower() != "content-length"}
        return Response(status_code=204, headers=headers)


def cors_middleware(origins: tuple[str, ...]) -> list[Middleware]:
    if not origins:
        return []
    return [
        Middleware(
            _NoContentPreflight,
            allow_origins=list(origins),
            allow_methods=_METHODS,
            allow_headers=_HEADERS,
            expose_headers=_EXPOSED,
            max_age=600,
        )
    ]
