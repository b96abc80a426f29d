"""Routes: a function's schedules (create, list, get, delete); the work is in
executor/functions/schedules.py."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from executor.api.access import DEPLOY, READ, guarded_route
from executor.api.context import ctx_of, function_ref
from executor.api.invocations import payload_bytes
from executor.api.responses import body, read_body, results
from schemas.codec import decode_as
from schemas.schedules import ScheduleRequest


async def create_schedule(request: Request) -> Response:
    ctx = ctx_of(request)
    ct, ft = await function_ref(request)
    wanted = decode_as(ScheduleRequest, await read_body(request, ctx.settings.max_body_bytes))
    created = await ctx.schedules.create(ct, ft, wanted, payload_bytes(wanted.payload))
    return body(created, 201)


async def list_schedules(request: Request) -> Response:
    ct, ft = await function_ref(request)
    found = await ctx_of(request).schedules.list(ct, ft)
    return results(found, len(found))


async def get_schedule(request: Request) -> Response:
    ct, ft = await function_ref(request)
    return body(await ctx_of(request).schedules.get(ct, ft, request.path_params["name"]))


async def delete_schedule(request: Request) -> Response:
    ct, ft = await function_ref(request)
    return body(await ctx_of(request).schedules.delete(ct, ft, request.path_params["name"]))


_ONE = "/compute/functions/{ct}/{ft}/schedules/{name}"
routes = [
    guarded_route("POST", "/compute/functions/{ct}/{ft}/schedules", DEPLOY, create_schedule),
    guarded_route("GET", "/compute/functions/{ct}/{ft}/schedules", READ, list_schedules),
    guarded_route("GET", _ONE, READ, get_schedule),
    guarded_route("DELETE", _ONE, DEPLOY, delete_schedule),
]
