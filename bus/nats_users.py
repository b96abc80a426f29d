"""The users of the embedded nats-server, each with only what its role needs.

- ``computebus``: everything (the operator's own, for tools and tests; its password stays in the
  data dir like the others).
- ``api``: everything but taking invocations (it may not subscribe to a function's subjects).
- ``worker``: everything but changing functions, bundles or tokens and reading tokens: no
  writes to the registry bucket or the bundle store, no lifecycle events, no JetStream request
  about the tokens bucket.
- ``client``, for the services that call functions: request ``ms.compute.*.function.*``,
  publish ``.async`` (JetStream answers its acks), subscribe to ``.result.>`` and ``.event.>``,
  NATS micro discovery (``$SRV.>``) and any subject that is not computebus's; none of
  JetStream's API, the KV and object stores, computebus's streams and control subjects, the
  internal roles' inboxes (``_CB_INBOX``), nor subscribing to a function's subjects (which
  would steal its invocations) or publishing its events and results.
"""

from __future__ import annotations

import json
from typing import Any

from bus import subjects

ROLES = ("computebus", "api", "worker", "client")
INTERNAL_INBOX = "_CB_INBOX"  # the inbox prefix of the API and worker connections
# The only subjects a role answers a request on: inboxes, never a subject of the caller's choice
# (a role publishes with its own, wider rights).
REPLY_PREFIXES = ("_INBOX.", f"{INTERNAL_INBOX}.")

_FUNCTION = f"{subjects.PREFIX}.*.function.*"
_TOKENS_STREAM = f"KV_{subjects.TOKENS_BUCKET}"
_INTERNALS = ["$JS.>", "$KV.>", "$O.>", "$SYS.>", "computebus.>", f"{INTERNAL_INBOX}.>"]


def permissions(role: str) -> dict[str, Any] | None:
    """nats-server permissions of ``role`` (None: everything)."""
    if role == "api":
        return {"subscribe": {"deny": [_FUNCTION, f"{_FUNCTION}.async"]}}
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
        ]
        return {"publish": {"deny": writes + tokens_api}}
    if role == "client":
        return {
            "publish": {
                "allow": [">"],
                "deny": [*_INTERNALS, f"{_FUNCTION}.event.>", f"{_FUNCTION}.result.>"],
            },
            "subscribe": {"allow": [">"], "deny": [*_INTERNALS, _FUNCTION, f"{_FUNCTION}.async"]},
        }
    return None


def render_users(passwords: dict[str, str]) -> str:
    """The ``authorization`` block of nats-server's config (its parser takes JSON values)."""
    users = []
    for role in ROLES:
        user: dict[str, Any] = {"user": role, "password": passwords[role]}
        granted = permissions(role)
        if granted is not None:
            user["permissions"] = granted
        users.append(user)
    return f"authorization {{ users: {json.dumps(users)} }}"
