"""Route: a function's invocations as they finish, as server-sent events (``event: record``,
``id:`` the invocation id, ``data:`` the monitor record exactly as the worker published it on
its ``.result.<status>`` subject). The stream ends when the function is deleted, or when the
token it was opened with is revoked or expires."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from bus.result_events import following
from executor.api.access import READ, guarded_route, token_still_valid
from executor.api.context import ctx_of, function_ref
from executor.api.event_stream import Push, event_frame
from schemas.base import StoredStruct
from schemas.codec import decoder_for
from schemas.errors import FunctionNotFound
from schemas.ids import is_invocation_id


class _Named(StoredStruct):
    invocation_id: str


_named = decoder_for(_Named)


def record_frame(data: bytes) -> bytes | None:
    """The event of one published record (None for one that cannot be read)."""
    try:
        invocation_id = _named.decode(data).invocation_id
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    if not is_invocation_id(invocation_id):  # it goes on a line of its own
        return None
    return event_frame("record", invocation_id, data)


async def live_invocations(request: Request) -> Response:
    ctx = ctx_of(request)
    ct, ft = await function_ref(request)
    if await ctx.view.function(ct, ft) is None:
        raise FunctionNotFound(f"function {ct}/{ft} does not exist")

    @contextlib.asynccontextmanager
    async def source(push: Push) -> AsyncIterator[None]:
        def on_result(data: bytes) -> None:
            frame = record_frame(data)
            if frame is not None:
                push(frame)

        async with following(ctx.nc, ct, ft, on_result, lambda: push(None)):
            yield

    return ctx.live.response(source, token_still_valid(request))


routes = [
    guarded_route("GET", "/compute/functions/{ct}/{ft}/invocations/live", READ, live_invocations),
]
