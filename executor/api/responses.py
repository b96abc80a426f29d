"""Response and request helpers shared by the routes: the envelopes, body limits, errors."""

from __future__ import annotations

from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from schemas.codec import encode
from schemas.errors import ComputeError, InvalidRequest, PayloadTooLarge, detail

JSON = "application/json"


def body(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """The success envelope ``{"body": ...}``."""
    return Response(encode({"body": content}), status, headers, JSON)


def raw_body(encoded: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """The success envelope around JSON that is already encoded (a handler's result)."""
    return Response(b'{"body":' + encoded + b"}", status, headers, JSON)


def results(items: list[Any], total: int, *, complete: bool = True) -> Response:
    """A listing; one whose scan could not finish in time says so (its total is then only what
    was read)."""
    listing: dict[str, Any] = {"results": items, "results_total": total}
    if not complete:
        listing["results_incomplete"] = True
    return body(listing)


def error_response(error: ComputeError, headers: dict[str, str] | None = None) -> Response:
    headers = {**error.http_headers(), **(headers or {})}
    return Response(encode(error.to_body()), error.status, headers, JSON)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes ``limit`` (before any decoding)."""
    for name, value in request.scope["headers"]:  # ASGI names are lower case
        if name == b"content-length":
            try:
                declared_size = int(value)
            except ValueError:
                raise InvalidRequest("Content-Length is not a number") from None
            if declared_size > limit:
                raise _too_large(limit)
            break
    chunks: list[bytes] = []
    size = 0
    while True:  # ASGI messages straight from the server (Request.stream costs more per call)
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"request body is over the {limit}-byte limit", [detail("/", f"at most {limit} bytes")]
    )


def query_int(request: Request, name: str, default: int, *, lo: int = 0, hi: int = 10_000) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = lo - 1
    if not lo <= value <= hi:
        raise InvalidRequest(
            f"query parameter {name} must be an integer from {lo} to {hi}",
            [detail(f"?{name}", f"must be an integer from {lo} to {hi}")],
        )
    return value
