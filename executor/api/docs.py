"""Route: ``GET /docs``, Swagger UI for ``/openapi.json``, from the files vendored in
``swagger_ui/`` (see its README): the page loads nothing from elsewhere, so it works with no
internet. The same access rule as ``/openapi.json`` (``OPS``)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from executor.api.access import OPS, guarded_route
from schemas.errors import NotFound

VENDORED = Path(__file__).resolve().parent / "swagger_ui"
_JS = "text/javascript; charset=utf-8"
# The files /docs/{asset} serves, and their types; nothing else under swagger_ui/ is served.
ASSETS = {
    "swagger-ui-bundle.js": _JS,
    "swagger-ui.css": "text/css; charset=utf-8",
    "init.js": _JS,
}

# Relative URLs: the page works behind a proxy that mounts the API under a prefix. The
# validator badge is off (it would send the document to an outside service).
_INIT = b"""window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
  });
};
"""
_PAGE = b"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>computebus API</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js"></script>
  <script src="docs/init.js"></script>
</body>
</html>
"""
_CACHE = {"Cache-Control": "public, max-age=3600"}


@cache
def _asset(name: str) -> bytes:
    return _INIT if name == "init.js" else (VENDORED / name).read_bytes()


async def docs_page(request: Request) -> Response:
    return Response(_PAGE, 200, media_type="text/html; charset=utf-8")


async def docs_asset(request: Request) -> Response:
    name = request.path_params["asset"]
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFound(f"no file {name!r} in the API viewer")
    return Response(_asset(name), 200, _CACHE, media_type)


routes = [
    guarded_route("GET", "/docs", OPS, docs_page),
    guarded_route("GET", "/docs/{asset}", OPS, docs_asset),
]
