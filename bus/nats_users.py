"""The accounts and users of the embedded nats-server, each with only what its role needs.

Two accounts keep the application's side of the bus apart from computebus's own:

- ``COMPUTEBUS`` holds JetStream (registry, bundles, streams) and the roles:
  - ``computebus``: everything (the operator's own, for tools and tests; its password stays in
    the data dir like the others);
  - ``api``: everything but taking invocations (it may not subscribe to a function's subjects);
    it also answers the auth callout (``nats_callout``);
  - ``worker``: everything but changing functions, bundles, schedules or tokens and reading
    tokens: no writes to the registry bucket, the bundle store or a schedule's subject, no
    lifecycle events, no JetStream request about the tokens bucket.
- ``APP`` is where the services that call functions connect, and sees of computebus only what
  it exports: a function's subject (with the caller's identity stamped on by the server, which
  the worker records), its ``.async`` subject (JetStream answers the acks), its ``.result.>``
  and ``.event.>`` subjects, and the workers' NATS micro discovery (``$SRV.PING|INFO|STATS``,
  plain and naming ``computebus``; every worker answers, so those replies are a stream). Nothing
  else of computebus exists there: no JetStream, no KV, no internal subject. Two kinds of user:
  - ``client``, with a password, shared by whoever holds it: calls every function, hears every
    result and event, asks the discovery subjects, and has the application's own subjects (its
    own micro services among them), except that it may not answer as computebus (subscribe to
    ``$SRV.*.computebus`` or ``$SRV.*.computebus.*``);
  - an API token (``nats://<token>@host``), checked by the auth callout, which grants the same
    per-collection scopes as over HTTP and a private inbox (``_INBOX.<token id>``).
- APP exports what it publishes (subjects of up to six tokens) to COMPUTEBUS alone, which sees
  it under ``computebus.app.``: what the subject triggers' streams capture.
- ``SYS``, nats-server's system account: its ``system`` user lets the API disconnect the
  connections of a token that was revoked.
"""

from __future__ import annotations

import json
from typing import Any

from bus import subjects
from schemas.triggers import MAX_SOURCE_TOKENS

COMPUTEBUS_ACCOUNT = "COMPUTEBUS"
APP_ACCOUNT = "APP"
SYSTEM_ACCOUNT = "SYS"
ROLES = ("computebus", "api", "worker", "client", "system")
_ACCOUNT_OF = {
    "computebus": COMPUTEBUS_ACCOUNT,
    "api": COMPUTEBUS_ACCOUNT,
    "worker": COMPUTEBUS_ACCOUNT,
    "client": APP_ACCOUNT,
    "system": SYSTEM_ACCOUNT,
}
AUTH_TIMEOUT_S = 3
INTERNAL_INBOX = "_CB_INBOX"  # the inbox prefix of the API and worker connections
# The only subjects a role answers a request on: inboxes, never a subject of the caller's choice
# (a role publishes with its own, wider rights). ``_R_.`` is the server's own reply subject for a
# request that came from the APP account.
REPLY_PREFIXES = ("_INBOX.", f"{INTERNAL_INBOX}.", "_R_.")

_FUNCTION = subjects.INVOKE_WILDCARD
_TOKENS_STREAM = f"KV_{subjects.TOKENS_BUCKET}"
_INTERNALS = ["$JS.>", "$KV.>", "$O.>", "$SYS.>", "computebus.>", f"{INTERNAL_INBOX}.>"]
# What COMPUTEBUS shares with APP: (kind, subject, share the caller's identity).
_EXPORTS = (
    ("service", _FUNCTION, True),
    ("service", subjects.ASYNC_WILDCARD, False),
    ("stream", f"{_FUNCTION}.result.>", False),
    ("stream", f"{_FUNCTION}.event.>", False),
    *(("service", srv, False) for srv in subjects.SRV_WILDCARDS),
)
# Every worker answers a discovery request, and a service import passes on one reply unless its
# export streams them (for this long after the request).
_STREAMED = {
    srv: {"response_type": "stream", "response_threshold": "5s"} for srv in subjects.SRV_WILDCARDS
}
# What APP publishes, for the subject triggers' streams to capture (bus/subject_triggers.py),
# under a prefix of ours. Subjects of one to MAX_SOURCE_TOKENS tokens, not ``>``: nats-server
# refuses an import that collides with one the other way (APP's of the ``result.>`` and
# ``event.>`` streams, seven tokens and more) as a cycle.
_APP_PUBLISHES = [".".join("*" * n) for n in range(1, MAX_SOURCE_TOKENS + 1)]
_APP_IMPORTS = [
    {"stream": {"account": APP_ACCOUNT, "subject": p}, "prefix": subjects.APP_IMPORT_PREFIX}
    for p in _APP_PUBLISHES
]
_AS_COMPUTEBUS = list(subjects.SRV_WILDCARDS[1:])  # the $SRV subjects naming computebus


def permissions(role: str) -> dict[str, Any] | None:
    """nats-server permissions of ``role`` (None: everything its account has)."""
    if role == "api":
        return {"subscribe": {"deny": [_FUNCTION, subjects.ASYNC_WILDCARD]}}
    if role == "worker":
        tokens_api = [
            f"$JS.API.*.*.{_TOKENS_STREAM}",
            f"$JS.API.*.*.{_TOKENS_STREAM}.>",
            f"$JS.API.*.*.*.{_TOKENS_STREAM}",
            f"$JS.API.*.*.*.{_TOKENS_STREAM}.>",
        ]
        writes = [
            f"$KV.{subjects.FUNCTIONS_BUCKET}.>",
            f"$KV.{subjects.TOKENS_BUCKET}.>",
            f"$O.{subjects.BUNDLES_BUCKET}.>",
            f"{_FUNCTION}.event.>",
            f"{subjects.SCHEDULE_PREFIX}.>",
        ]
        return {"publish": {"deny": writes + tokens_api}}
    if role == "client":
        return {
            "publish": {
                "allow": [">"],
                "deny": [*_INTERNALS, f"{_FUNCTION}.event.>", f"{_FUNCTION}.result.>"],
            },
            "subscribe": {
                "allow": [">"],
                "deny": [*_INTERNALS, _FUNCTION, subjects.ASYNC_WILDCARD, *_AS_COMPUTEBUS],
            },
        }
    return None


def render_accounts(passwords: dict[str, str], callout_issuer: str) -> str:
    """The ``accounts``, ``system_account`` and ``authorization`` blocks of nats-server's config
    (its parser takes JSON values). Every user not named here goes to the auth callout, answered
    by the API with keys signed by ``callout_issuer`` (a public account nkey)."""
    users: dict[str, list[dict[str, Any]]] = {}
    for role in ROLES:
        user: dict[str, Any] = {"user": role, "password": passwords[role]}
        granted = permissions(role)
        if granted is not None:
            user["permissions"] = granted
        users.setdefault(_ACCOUNT_OF[role], []).append(user)
    exports = [{kind: subject, **_STREAMED.get(subject, {})} for kind, subject, _ in _EXPORTS]
    imports = []
    for kind, subject, share in _EXPORTS:
        entry: dict[str, Any] = {kind: {"account": COMPUTEBUS_ACCOUNT, "subject": subject}}
        if share:
            entry["share"] = True
        imports.append(entry)
    accounts = {
        COMPUTEBUS_ACCOUNT: {
            "jetstream": "enabled",
            "users": users[COMPUTEBUS_ACCOUNT],
            "exports": exports,
            "imports": _APP_IMPORTS,
        },
        APP_ACCOUNT: {
            "users": users[APP_ACCOUNT],
            "imports": imports,
            "exports": [{"stream": p, "accounts": [COMPUTEBUS_ACCOUNT]} for p in _APP_PUBLISHES],
        },
        SYSTEM_ACCOUNT: {"users": users[SYSTEM_ACCOUNT]},
    }
    callout = {
        "issuer": callout_issuer,
        "account": COMPUTEBUS_ACCOUNT,
        "auth_users": list(ROLES),
    }
    return "\n".join(
        [
            f"accounts: {json.dumps(accounts)}",
            f"system_account: {SYSTEM_ACCOUNT}",
            # How long a connection may take to authenticate, the callout's answer included.
            f"authorization {{ timeout: {AUTH_TIMEOUT_S}, auth_callout: {json.dumps(callout)} }}",
        ]
    )
