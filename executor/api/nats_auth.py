"""NATS clients that connect with an API token: nats-server's auth callout, answered here.

The server hands every connection that is not one of its configured users to
``$SYS.REQ.USER.AUTH`` in the computebus account; the API processes take those requests in a
queue group, check the token as the HTTP side does (the same watch-fed store), and answer with a
user for the APP account whose permissions are the token's scopes:

- ``invoke`` on a collection: publish its functions' subjects and their ``.async`` subjects;
- ``read`` (and ``deploy``, which implies it): subscribe to their ``.result.>`` and ``.event.>``;
- always: the token's own inbox, ``_INBOX.<token id>.>`` (connect with that ``inbox_prefix``),
  so no other client hears its replies;
- the workers' NATS micro discovery (``bus/service_discovery.py``): every token may ping
  computebus (``$SRV.PING.computebus[.<id>]``); the function list and stats
  (``$SRV.INFO``, ``$SRV.STATS``, which name every collection's functions and schemas) and the
  plain forms that ``nats micro ls`` sends (heard by the application's own services too) only a
  token that reads every collection (``admin``, ``read:*``).

NATS subjects cannot say "every collection that starts with team-": a prefix scope grants the
collections that exist when the client connects. The user expires with its token; a revoke
disconnects the token's connections at once (through the system account), and a reconnect
asks here again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Coroutine
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from bus import nats_jwt, subjects
from bus.connect import connect, with_credentials
from bus.nats_callout import AUTH_QUEUE, AUTH_SUBJECT, CalloutKeys
from bus.nats_users import APP_ACCOUNT
from bus.registry_view import RegistryView
from bus.tokens import TokenStore, split_token
from schemas.tokens import ACTIONS, Action, Grants, TokenRecord, inbox_prefix_of, nats_user_of

log = logging.getLogger("computebus.api.nats_auth")

_FAILED_DELAY_S = 0.5  # a refused connect is answered this much later (guessing is slow)
_CONNZ = "$SYS.REQ.SERVER.PING.CONNZ"
_CONNZ_WAIT_S = 0.5  # how long the servers of a cluster have to list a revoked token's clients


class NatsAuth:
    """Answers the auth callout and disconnects the connections of revoked tokens."""

    def __init__(
        self, nc: Client, tokens: TokenStore, view: RegistryView, keys: CalloutKeys, url: str
    ) -> None:
        self.nc = nc
        self.tokens = tokens
        self.view = view
        self._seed = keys.issuer_seed.encode()
        self._system_url = with_credentials(url, "system", keys.system_password)
        self._system: Client | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(AUTH_SUBJECT, queue=AUTH_QUEUE, cb=self._take)
        self.tokens.on_removed.append(self._revoked)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._sub.unsubscribe()
        with contextlib.suppress(ValueError):
            self.tokens.on_removed.remove(self._revoked)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._system is not None:
            await self._system.close()

    async def _take(self, msg: Msg) -> None:
        # Each request on its own task: a refusal waits before it answers.
        self._spawn(self._answer(msg))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, msg: Msg) -> None:
        try:
            request = nats_jwt.claims_of(msg.data.decode())["nats"]
            user_nkey, server_id = request["user_nkey"], request["server_id"]["id"]
            opts = request.get("connect_opts", {})
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring an unreadable auth callout request")
            return
        presented = opts.get("auth_token") or opts.get("pass") or ""
        record = self.tokens.verify(presented) if isinstance(presented, str) else None
        answer: dict[str, Any] = {"type": "authorization_response", "version": 2}
        if record is None:
            parts = split_token(presented) if isinstance(presented, str) else None
            log.info(
                "refused a NATS connection from %s: %s",
                request.get("client_info", {}).get("host", "?"),
                f"token {parts[0]} unknown, expired or revoked" if parts else "no API token",
            )
            await asyncio.sleep(_FAILED_DELAY_S)
            answer["error"] = "an API token is required (unknown, expired or revoked)"
        else:
            answer["jwt"] = nats_jwt.encode(self._user_claims(record, user_nkey), self._seed)
        response = {"sub": user_nkey, "aud": server_id, "nats": answer}
        try:
            await msg.respond(nats_jwt.encode(response, self._seed).encode())
        except Exception as exc:  # the connection is refused when the server hears nothing
            log.warning("could not answer an auth callout request: %s", exc)

    def _user_claims(self, record: TokenRecord, user_nkey: str) -> dict[str, Any]:
        collections = {f.collection_topic for f in self.view.cached_functions()}
        granted = collections_granted(Grants.of(record.scopes), collections)
        publish = [s for ct in granted["invoke"] for s in (_fn(ct), f"{_fn(ct)}.async")]
        publish += discovery_subjects(sees_all=granted["read"] == ["*"])
        subscribe = [inbox_prefix_of(record.id) + ".>"]
        for ct in granted["read"]:
            subscribe += [f"{_fn(ct)}.result.>", f"{_fn(ct)}.event.>"]
        user: dict[str, Any] = {
            "type": "user",
            "version": 2,
            # An empty allow list would allow everything.
            "pub": {"allow": publish} if publish else {"deny": [">"]},
            "sub": {"allow": subscribe},
            "subs": -1,
            "data": -1,
            "payload": -1,
        }
        claims: dict[str, Any] = {
            "sub": user_nkey,
            "aud": APP_ACCOUNT,
            "name": nats_user_of(record.id),
            "nats": user,
        }
        if record.expires:
            claims["exp"] = record.expires // 1000
        return claims

    def _revoked(self, token_id: str) -> None:
        self._spawn(self._disconnect(token_id))

    async def _disconnect(self, token_id: str) -> None:
        """Close every connection of the token on every server of the bus."""
        try:
            system = await self._system_connection()
            inbox = system.new_inbox()
            replies = await system.subscribe(inbox)
            query = {"acc": APP_ACCOUNT, "user": nats_user_of(token_id), "auth": True}
            await system.publish(_CONNZ, json.dumps(query).encode(), reply=inbox)
            found: list[tuple[str, int]] = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + _CONNZ_WAIT_S
            while (left := deadline - loop.time()) > 0:
                try:
                    reply = json.loads((await replies.next_msg(timeout=left)).data)
                except (TimeoutError, nats.errors.TimeoutError):
                    break
                server = reply.get("server", {}).get("id", "")
                for conn in (reply.get("data") or {}).get("connections") or []:
                    found.append((server, int(conn["cid"])))
            await replies.unsubscribe()
            for server, cid in found:
                kick = json.dumps({"cid": cid}).encode()
                await system.request(f"$SYS.REQ.SERVER.{server}.KICK", kick, timeout=2)
            if found:
                log.info("closed %d NATS connection(s) of revoked token %s", len(found), token_id)
        except Exception as exc:  # the token is revoked all the same; its connections stay
            log.warning("could not close the NATS connections of token %s: %s", token_id, exc)

    async def _system_connection(self) -> Client:
        if self._system is None or self._system.is_closed:
            self._system = await connect(self._system_url, name="computebus-api-system")
        return self._system


def collections_granted(grants: Grants, collections: set[str]) -> dict[Action, list[str]]:
    """Per action, the collection tokens of subjects to grant: ``*`` for all, else names."""
    granted: dict[Action, list[str]] = {}
    for action in ACTIONS:
        if grants.admin or (action, "") in grants.prefixes:  # "" is the prefix of ``*``
            granted[action] = ["*"]
            continue
        names = {ct for a, ct in grants.exact if a == action}
        names |= {ct for ct in collections if grants.allows(action, ct)}
        granted[action] = sorted(names)
    return granted


def discovery_subjects(*, sees_all: bool) -> list[str]:
    """The ``$SRV`` subjects a token may ask on (see the module's docstring)."""
    if not sees_all:
        return list(subjects.srv_subjects("PING", "*")[1:])
    return [s for verb in subjects.SRV_VERBS for s in subjects.srv_subjects(verb, "*")]


def _fn(ct: str) -> str:
    return f"{subjects.PREFIX}.{ct}.function.*"
