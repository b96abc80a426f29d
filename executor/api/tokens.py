"""Routes: create, list and revoke API tokens (admin only; the secret is shown once, at create)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from bus.tokens import LastAdmin
from executor.api import change_log
from executor.api.access import ADMIN, caller_of, guarded_route
from executor.api.context import ctx_of
from executor.api.responses import body, read_body, results
from executor.functions.rules import CONTROL_CHARS
from schemas.codec import decode_as
from schemas.errors import Conflict, InvalidRequest, NotFound, detail
from schemas.tokens import (
    MAX_EXPIRES_IN_S,
    MAX_NAME_CHARS,
    CreateTokenRequest,
    check_scopes,
    token_view,
)

_MAX_BODY = 64 * 1024


async def create_token(request: Request) -> Response:
    ctx = ctx_of(request)
    ask = decode_as(CreateTokenRequest, await read_body(request, _MAX_BODY))
    if not ask.name.strip() or len(ask.name) > MAX_NAME_CHARS or CONTROL_CHARS.search(ask.name):
        reason = f"must be 1 to {MAX_NAME_CHARS} characters, not blank, no control characters"
        raise InvalidRequest(f"/name {reason}", [detail("/name", reason)])
    check_scopes(ask.scopes)
    expires_in = ask.expires_in_s
    if expires_in is not None and not 0 < expires_in <= MAX_EXPIRES_IN_S:
        reason = f"must be between 1 and {MAX_EXPIRES_IN_S} seconds (ten years), or left out"
        raise InvalidRequest(f"/expires_in_s {reason}", [detail("/expires_in_s", reason)])
    created = await ctx.tokens.issue(ask.name, ask.scopes, expires_in)
    change_log.token_changed(request, "created", created.id, created.name)
    return body(created, 201)


async def list_tokens(request: Request) -> Response:
    items = [token_view(r) for r in ctx_of(request).tokens.all()]
    return results(items, len(items))


async def revoke_token(request: Request) -> Response:
    tokens = ctx_of(request).tokens
    token_id = request.path_params["id"]
    record = tokens.get(token_id)
    if record is None:
        raise NotFound(f"no token {token_id!r}")
    try:
        await tokens.revoke(token_id)
    except LastAdmin:
        raise Conflict(
            "this is the last admin token that does not expire: create another one first"
        ) from None
    change_log.token_changed(request, "revoked", token_id, record.name)
    caller = caller_of(request)
    revoked_self = caller is not None and caller.token_id == token_id
    return body({"id": token_id, "revoked": True, "was_caller": revoked_self})


routes = [
    guarded_route("POST", "/compute/tokens", ADMIN, create_token),
    guarded_route("GET", "/compute/tokens", ADMIN, list_tokens),
    guarded_route("DELETE", "/compute/tokens/{id}", ADMIN, revoke_token),
]
