"""Routes: create, list, show, switch off and on, and delete triggers (``/compute/triggers``).

Any valid token reaches them; what it may do is decided by the trigger's collection: deploy
rights to create, change or delete, read rights to see (a trigger elsewhere is a 404)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from executor.api.access import ANY_TOKEN, caller_of, guarded_route
from executor.api.context import checked_collection, ctx_of
from executor.api.responses import body, read_body, results
from schemas.codec import decode_as
from schemas.errors import Forbidden, NotFound
from schemas.tokens import Action
from schemas.triggers import Trigger, TriggerPatch


def _may(request: Request, action: Action, ct: str) -> bool:
    caller = caller_of(request)
    return caller is not None and caller.grants.allows(action, ct)


async def create_trigger(request: Request) -> Response:
    ctx = ctx_of(request)
    data = await read_body(request, ctx.settings.max_body_bytes)

    def may_deploy(ct: str) -> None:
        if not _may(request, "deploy", ct):
            raise Forbidden(f"the token may not deploy in collection {ct}")

    return body(await ctx.triggers.create(data, authorize=may_deploy), 201)


async def list_triggers(request: Request) -> Response:
    ct = request.query_params.get("collection_topic") or None
    if ct is not None:
        checked_collection(ct, "?collection_topic")
    found = [
        t
        for t in ctx_of(request).triggers.store.all()
        if ct in (None, t.function.collection_topic)
        and _may(request, "read", t.function.collection_topic)
    ]
    return results(found, len(found))


def _trigger(request: Request, action: Action) -> Trigger:
    """The trigger of the path; 404 when there is none or the token cannot read its collection,
    403 when it can read but not ``action``."""
    trigger_id = request.path_params["id"]
    trigger = ctx_of(request).triggers.store.get(trigger_id)
    if trigger is None or not _may(request, "read", trigger.function.collection_topic):
        raise NotFound(f"no trigger {trigger_id}")
    if not _may(request, action, trigger.function.collection_topic):
        raise Forbidden(
            f"the token may not {action} in collection {trigger.function.collection_topic}"
        )
    return trigger


async def get_trigger(request: Request) -> Response:
    return body(_trigger(request, "read"))


async def patch_trigger(request: Request) -> Response:
    ctx = ctx_of(request)
    trigger = _trigger(request, "deploy")
    patch = decode_as(TriggerPatch, await read_body(request, ctx.settings.max_body_bytes))
    return body(await ctx.triggers.set_enabled(trigger, patch.enabled))


async def delete_trigger(request: Request) -> Response:
    trigger = _trigger(request, "deploy")
    await ctx_of(request).triggers.delete(trigger)
    return body(trigger)


routes = [
    guarded_route("POST", "/compute/triggers", ANY_TOKEN, create_trigger),
    guarded_route("GET", "/compute/triggers", ANY_TOKEN, list_triggers),
    guarded_route("GET", "/compute/triggers/{id}", ANY_TOKEN, get_trigger),
    guarded_route("PATCH", "/compute/triggers/{id}", ANY_TOKEN, patch_trigger),
    guarded_route("DELETE", "/compute/triggers/{id}", ANY_TOKEN, delete_trigger),
]
