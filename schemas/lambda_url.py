"""An HTTP request as the event of an HTTP route, and a handler's result as the HTTP answer, in
the shapes of AWS Lambda's function URLs (payload format 2.0), so handlers written for those
run unchanged. Pure: no I/O.

The event: ``rawPath`` (the whole path the client asked for), ``rawQueryString``,
``headers`` (lower-case names; repeated ones joined with ","; cookies moved to ``cookies``),
``queryStringParameters``, ``requestContext.http`` and ``body`` (absent when empty), base64
with ``isBase64Encoded: true`` unless it is text. A result with ``statusCode`` is the answer
(``headers``, ``body``, ``isBase64Encoded``, ``cookies``); any other result is JSON with 200.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from schemas.codec import encode
from schemas.errors import InvalidOutput

_TEXT_TYPES = re.compile(
    r"^(text/.*|application/(json|xml|javascript|x-www-form-urlencoded|([\w.+-]+\+(json|xml))))$"
)
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP header name (RFC 9110)
# What the server sets from the body it sends, never the handler.
_HOP_BY_HOP = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})


@dataclass(frozen=True)
class HttpRequest:
    """What the event is made of (headers as the ASGI server gives them)."""

    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    source_ip: str
    request_id: str
    now_ms: int | None = None


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def is_text(content_type: str, body: bytes) -> bool:
    """Whether the body travels as text: a textual media type and valid UTF-8."""
    media = content_type.split(";", 1)[0].strip().lower()
    if not _TEXT_TYPES.fullmatch(media):
        return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def lambda_event(request: HttpRequest) -> dict[str, Any]:
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for raw_name, raw_value in request.headers:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        if name == "cookie":
            cookies += [c.strip() for c in value.split(";") if c.strip()]
        elif name in headers:
            headers[name] += "," + value
        else:
            headers[name] = value
    raw_query = request.query.decode("latin-1")
    params: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        params[key] = f"{params[key]},{value}" if key in params else value
    now_ms = request.now_ms if request.now_ms is not None else int(time.time() * 1000)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": request.path,
        "rawQueryString": raw_query,
        "headers": headers,
    }
    if cookies:
        event["cookies"] = cookies
    if params:
        event["queryStringParameters"] = params
    event["requestContext"] = {
        "accountId": "anonymous",
        "domainName": headers.get("host", ""),
        "http": {
            "method": request.method,
            "path": request.path,
            "protocol": "HTTP/1.1",
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request.request_id,
        "routeKey": "$default",
        "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now_ms / 1000)),
        "timeEpoch": now_ms,
    }
    if request.body:
        text = is_text(headers.get("content-type", ""), request.body)
        event["body"] = request.body.decode() if text else base64.b64encode(request.body).decode()
        event["isBase64Encoded"] = not text
    else:
        event["isBase64Encoded"] = False
    return event


def http_answer(result: Any) -> HttpAnswer:
    """The HTTP answer for a handler's result; a malformed ``statusCode`` shape is a 502."""
    if not isinstance(result, dict) or "statusCode" not in result:
        return HttpAnswer(200, [("content-type", "application/json")], encode(result))
    status = result["statusCode"]
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise _bad("statusCode", "must be an integer from 100 to 599")
    headers = _headers(result.get("headers"))
    for cookie in _list_of_strings(result.get("cookies"), "cookies"):
        headers.append(("set-cookie", cookie))
    if not any(name == "content-type" for name, _ in headers):
        headers.append(("content-type", "application/json"))
    raw = result.get("body")
    if raw is None:
        data = b""
    elif isinstance(raw, str):
        data = _decoded(raw) if result.get("isBase64Encoded") is True else raw.encode()
    else:
        data = encode(raw)  # Lambda wants a string; any other JSON is sent as JSON
    return HttpAnswer(status, headers, data)


def _headers(given: Any) -> list[tuple[str, str]]:
    if given is None:
        return []
    if not isinstance(given, dict):
        raise _bad("headers", "must be an object of header names to values")
    found = []
    for name, value in given.items():
        if not _TOKEN.fullmatch(name):
            raise _bad(f"headers/{name}", "is not a valid header name")
        if isinstance(value, dict | list) or value is None:
            raise _bad(f"headers/{name}", "must be a string, number or boolean")
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        if "\r" in text or "\n" in text or not text.isprintable() or not _latin1(text):
            raise _bad(f"headers/{name}", "must be printable Latin-1 on one line")
        if name.lower() not in _HOP_BY_HOP:
            found.append((name.lower(), text))
    return found


def _list_of_strings(given: Any, where: str) -> list[str]:
    if given is None:
        return []
    if not isinstance(given, list) or not all(isinstance(v, str) for v in given):
        raise _bad(where, "must be a list of strings")
    if any(not v.isprintable() or not _latin1(v) for v in given):
        raise _bad(where, "must be printable Latin-1 on one line")
    return list(given)


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _decoded(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _bad("body", "is not base64, though isBase64Encoded is true") from None


def _bad(field: str, reason: str) -> InvalidOutput:
    return InvalidOutput(
        f"the handler's HTTP response {field} {reason}", [{"path": f"/{field}", "message": reason}]
    )
