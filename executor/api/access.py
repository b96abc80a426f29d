"""Who is calling and whether they may: every ``/compute`` route is wrapped by ``guard`` with the
rule it needs, and ``PUBLIC_PATHS`` lists the routes that take no token (a test walks the route
table, so a new route cannot slip through unguarded).

A token comes as ``Authorization: Bearer <token>`` or ``X-Api-Key: <token>``. Missing,
malformed, unknown, expired or revoked: 401 with ``WWW-Authenticate: Bearer``. Valid without
the scope: 403, except that a collection the token has no scope on at all answers 404, as if
the function did not exist. A token is verified (hashed and compared) once; later calls find
it in a cache that still asks the watch-fed store whether it was revoked or has expired.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bus.registry_view import RegistryView
from bus.tokens import TokenStore, live
from executor.tasks import TaskSet
from schemas import ids
from schemas.errors import Forbidden, FunctionNotFound, NotFound, Unauthorized
from schemas.invocations import CallerInfo
from schemas.tokens import Action, Grants, TokenRecord

log = logging.getLogger("computebus.access")

Endpoint = Callable[[Request], Awaitable[Response]]
CALLER = "computebus.caller"  # where a guarded request keeps its Caller (in the ASGI scope)
# The console's page and files hold no data: it asks for a token before calling the API.
ALWAYS_PUBLIC = frozenset({"/healthz", "/readyz", "/console", "/console/{asset}"})
# HTTP routes (``/r/...``): each route says whether it takes a token (``Access.route_caller``).
ROUTED_PATHS = frozenset({"/r/{path:path}"})
# Public when settings.ops_public (by default, only on loopback).
OPS_PATHS = frozenset({"/metrics", "/openapi.json", "/docs", "/docs/{asset}"})

_PUBLIC = CallerInfo(via="public")
_TOKEN_HEADERS = frozenset({b"authorization", b"x-api-key"})
_VERIFIED_MAX = 10_000
_TOUCH_EVERY_S = 60.0
_FAILURES_FREE = 5  # failed checks per address per window before each further one is slowed
_FAILURE_WINDOW_S = 60.0
_FAILURE_DELAY_MAX_S = 2.0
_ADDRESSES_MAX = 10_000


@dataclass(frozen=True)
class Caller:
    """The token a request came with."""

    token_id: str
    name: str
    grants: Grants
    info: CallerInfo  # as invocation records show it, made once per verified token


@dataclass(frozen=True)
class Rule:
    """What a route needs: ``admin``; ``any`` valid token (the route filters what it shows);
    or ``action`` on the path's collection, ``public_invoke`` letting a function opt out."""

    need: Literal["admin", "any", "ops", "on_collection"]
    action: Action = "read"
    public_invoke: bool = False


ADMIN = Rule("admin")
ANY_TOKEN = Rule("any")
OPS = Rule("ops")  # open when settings.ops_public says so, else any token
READ = Rule("on_collection", "read")
INVOKE = Rule("on_collection", "invoke", public_invoke=True)
DEPLOY = Rule("on_collection", "deploy")


class Access:
    """Token checks for one API process: the verified-token cache and the failure slowdown."""

    def __init__(self, tokens: TokenStore, view: RegistryView, *, ops_public: bool) -> None:
        self.tokens = tokens
        self.view = view
        self.ops_public = ops_public
        self._verified: OrderedDict[str, Caller] = OrderedDict()
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._touched: dict[str, float] = {}  # token id -> when last_used was last written
        self._touches = TaskSet("token last-used write")

    def presented(self, request: Request) -> str | None:
        """The token the request carries, or None; a malformed header is a 401."""
        # One pass over the raw headers (ASGI names are lower case): this runs on every call.
        found = [(n, v) for n, v in request.scope["headers"] if n in _TOKEN_HEADERS]
        if len(found) > 1:
            raise Unauthorized("send one token, in Authorization or X-Api-Key, not several")
        if not found:
            return None
        name, raw = found[0]
        value: str = raw.decode("latin-1")
        if name == b"x-api-key":
            return value.strip()
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip() or " " in token.strip():
            raise Unauthorized("Authorization must be 'Bearer <token>'")
        return token.strip()

    def caller(self, token: str) -> Caller | None:
        cached = self._verified.get(token)
        if cached is not None:
            record = self.tokens.get(cached.token_id)
            if record is not None and live(record):
                self._used(cached.token_id)
                return cached
            del self._verified[token]
            return None
        found = self.tokens.verify(token)
        if found is None:
            return None
        caller = _caller(found)
        self._used(found.id)
        self._verified[token] = caller
        if len(self._verified) > _VERIFIED_MAX:
            self._verified.popitem(last=False)
        return caller

    def _used(self, token_id: str) -> None:
        """Write the token's last_used, at most once a minute per API process."""
        now = time.monotonic()
        if now - self._touched.get(token_id, -_TOUCH_EVERY_S) < _TOUCH_EVERY_S:
            return
        self._touched[token_id] = now
        if len(self._touched) > _VERIFIED_MAX:
            self._touched.clear()
        self._touches.spawn(self.tokens.touch(token_id))

    async def check(self, request: Request, rule: Rule) -> Caller | None:
        """The caller a request may go on as (None: a public invoke); raises 401, 403 or 404."""
        token = self.presented(request)
        if token is None and (
            (rule.need == "ops" and self.ops_public)
            or (rule.public_invoke and await self._is_public(request))
        ):
            return None
        if token is None:
            raise Unauthorized("a token is required (Authorization: Bearer <token>)")
        caller = self.caller(token)
        if caller is None:
            await self._failed(request)  # a guess, perhaps: slowed past a few
            raise Unauthorized("the token is not valid (unknown, expired or revoked)")
        if rule.need == "admin" and not caller.grants.admin:
            raise Forbidden("only an admin token may do this")
        if rule.need == "on_collection":
            ct = request.path_params["ct"]
            if not caller.grants.allows(rule.action, ct):
                if rule.public_invoke and await self._is_public(request):
                    return caller  # open to anyone: a token of elsewhere takes nothing away
                if not caller.grants.sees(ct):
                    ft = request.path_params.get("ft", "")
                    raise FunctionNotFound(
                        f"function {ct}/{ft} does not exist (no such name or service id)"
                    )
                raise Forbidden(f"the token may not {rule.action} in collection {ct}")
        return caller

    def still_valid(self, caller: Caller) -> bool:
        """Whether the token ``caller`` came with is still valid: not revoked, not expired."""
        record = self.tokens.get(caller.token_id)
        return record is not None and live(record)

    async def route_caller(self, request: Request, ct: str, *, public: bool) -> Caller | None:
        """Who may go through an HTTP route to a function of ``ct``: anyone when it is public
        (its headers are the sender's, a token among them is not read), else a token that may
        invoke in ``ct``, as for ``POST .../invoke``; raises 401, 403 or 404."""
        if public:
            return None
        token = self.presented(request)
        if token is None:
            raise Unauthorized("a token is required (Authorization: Bearer <token>)")
        caller = self.caller(token)
        if caller is None:
            await self._failed(request)
            raise Unauthorized("the token is not valid (unknown, expired or revoked)")
        if not caller.grants.allows("invoke", ct):
            if not caller.grants.sees(ct):
                raise NotFound(f"no HTTP route {request.method} {request.url.path}")
            raise Forbidden(f"the token may not invoke in collection {ct}")
        return caller

    async def _is_public(self, request: Request) -> bool:
        """Whether the function of the path opted in to invocation without a token."""
        ct, ft = request.path_params["ct"], request.path_params["ft"]
        if not ids.COLLECTION_TOPIC.fullmatch(ct):
            return False
        service = await self.view.service_of(ct, ft)
        record = await self.view.function(ct, service) if service is not None else None
        return record is not None and record.access.public_invoke

    async def _failed(self, request: Request) -> None:
        """Count a failed check for the client's address; past a few, answer more slowly."""
        address = request.client.host if request.client else "?"
        now = time.monotonic()
        started, count = self._failures.pop(address, (now, 0))
        if now - started > _FAILURE_WINDOW_S:
            started, count = now, 0
        count += 1
        self._failures[address] = (started, count)
        if len(self._failures) > _ADDRESSES_MAX:
            self._failures.popitem(last=False)
        if count > _FAILURES_FREE:
            log.debug("failed token check %d from %s", count, address)
            await asyncio.sleep(min(_FAILURE_DELAY_MAX_S, 0.05 * 2 ** (count - _FAILURES_FREE)))


def _caller(record: TokenRecord) -> Caller:
    info = CallerInfo(via="token", token_id=record.id, name=record.name)
    return Caller(record.id, record.name, Grants.of(record.scopes), info)


def guarded_route(method: str, path: str, rule: Rule, endpoint: Endpoint) -> Route:
    """A route whose endpoint runs only past ``rule``'s check (how every guarded route is made)."""
    return Route(path, guard(rule, endpoint), methods=[method])


def guard(rule: Rule, endpoint: Endpoint) -> Endpoint:
    """``endpoint`` behind ``rule``; the caller is kept in the request's scope."""

    async def guarded(request: Request) -> Response:
        access: Access = request.app.state.access
        request.scope[CALLER] = await access.check(request, rule)
        return await endpoint(request)

    guarded.__name__ = endpoint.__name__
    guarded.__doc__ = endpoint.__doc__
    guarded.rule = rule  # type: ignore[attr-defined]
    return guarded


def caller_of(request: Request) -> Caller | None:
    caller: Caller | None = request.scope.get(CALLER)
    return caller


def token_still_valid(request: Request) -> Callable[[], bool]:
    """Asks again whether the request's token is valid, for a response that outlives its check
    (a live stream): a token revoked or expired since must stop getting data."""
    access: Access = request.app.state.access
    caller = caller_of(request)
    if caller is None:
        return lambda: True  # no token was needed
    return lambda: access.still_valid(caller)


def caller_info(request: Request) -> CallerInfo:
    """Who called, as the invocation's record says it."""
    caller = caller_of(request)
    return _PUBLIC if caller is None else caller.info
