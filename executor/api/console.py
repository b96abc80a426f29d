"""Routes: ``GET /console`` and its files, the web console, from ``console_ui/`` (shipped in the
wheel; no build step, nothing loaded from elsewhere).

The page itself is public: it holds no data, and asks for a token before it calls the API,
which it reaches only through the public ``/compute`` routes. Its Content-Security-Policy allows
scripts, styles and requests to this origin only, so text a handler wrote (logs, results) can
never run as script even if a page forgot to treat it as text.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from schemas.errors import NotFound

UI = Path(__file__).resolve().parent / "console_ui"
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate each time (an upgraded server serves its own files), answered by the ETag.
    "Cache-Control": "no-cache",
}


def _etag(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


@cache
def _files() -> dict[str, tuple[bytes, str, str]]:
    """Each top-level .js and .css file's bytes, media type and ETag, by name: read once, and
    a name asked for is only looked up here (a caller's names reach neither the disk nor a
    cache)."""
    found = {}
    for path in UI.iterdir():
        media_type = _TYPES.get(path.suffix)
        if media_type is not None and not path.name.startswith(".") and path.is_file():
            data = path.read_bytes()
            found[path.name] = (data, media_type, _etag(data))
    return found


def _serve(request: Request, data: bytes, media_type: str, etag: str) -> Response:
    headers = {**_HEADERS, "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(b"", 304, headers)
    return Response(data, 200, headers, media_type)


@cache
def _page() -> tuple[bytes, str]:
    data = (UI / "index.html").read_bytes()
    return data, _etag(data)


async def console_page(request: Request) -> Response:
    data, etag = _page()
    return _serve(request, data, "text/html; charset=utf-8", etag)


async def console_file(request: Request) -> Response:
    name = request.path_params["asset"]
    found = _files().get(name)
    if found is None:
        raise NotFound(f"no file {name!r} in the console")
    return _serve(request, *found)


routes = [
    Route("/console", console_page, methods=["GET"]),
    Route("/console/{asset}", console_file, methods=["GET"]),
]
