"""The API's ASGI entry: a sync or Async invoke (``POST /compute/functions/{ct}/{ft}/invoke``)
goes straight to its guarded endpoint; everything else, and any request that needs CORS, goes
through the Starlette application.

Starlette's middleware, exception wrappers and router cost more than the rest of an invoke's
work in the API; the invoke endpoint catches its own errors, and what else it can raise is
answered by the application's own handlers, so both paths answer alike.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from executor.api.access import INVOKE, guard
from executor.api.app import answer_error
from executor.api.invocations import invoke

_PREFIX = "/compute/functions/"
_SUFFIX = "/invoke"


class HotPath:
    """ASGI: the invoke route without the stack, the rest through ``app``."""

    def __init__(self, app: Starlette, *, cors: bool) -> None:
        self.app = app
        self._cors = cors
        self._invoke = guard(INVOKE, invoke)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = _invoke_params(scope) if scope["type"] == "http" else None
        if params is None or (self._cors and _has_origin(scope)):
            await self.app(scope, receive, send)
            return
        scope["app"] = self.app
        scope["path_params"] = params
        request = Request(scope, receive, send)
        try:
            response = await self._invoke(request)
        except Exception as exc:
            response = await answer_error(request, exc)
        await response(scope, receive, send)


def _invoke_params(scope: Scope) -> dict[str, str] | None:
    """``{"ct": ..., "ft": ...}`` of an invoke path, or None for any other request."""
    path: str = scope["path"]
    if scope["method"] != "POST" or not path.startswith(_PREFIX) or not path.endswith(_SUFFIX):
        return None
    ct, slash, ft = path[len(_PREFIX) : -len(_SUFFIX)].partition("/")
    if not slash or not ct or not ft or "/" in ft:
        return None
    return {"ct": ct, "ft": ft}


def _has_origin(scope: Scope) -> bool:
    return any(name == b"origin" for name, _ in scope["headers"])
