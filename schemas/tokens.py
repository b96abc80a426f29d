"""API tokens: what is stored (a hash, never the secret), what a create asks for, and the scopes a
token grants.

A scope is ``admin`` (everything, and managing tokens) or ``ACTION:COLLECTIONS``: the action
``read`` (functions, revisions, records, dead letters), ``invoke`` or ``deploy`` (create, change,
delete, aliases, retry; it implies ``read``), and the collections as an exact name, a prefix
pattern (``team-*``) or ``*`` for all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from schemas.base import StoredStruct, Struct
from schemas.errors import InvalidRequest, detail

Action = Literal["read", "invoke", "deploy"]
ACTIONS: tuple[Action, ...] = ("read", "invoke", "deploy")
ADMIN = "admin"
_PATTERN = re.compile(r"^(\*|[A-Za-z0-9_-]{1,64}\*?)$")
MAX_SCOPES = 64
MAX_NAME_CHARS = 128
MAX_EXPIRES_IN_S = 10 * 365 * 24 * 3600  # ten years
TOKEN_PREFIX = "cbt_"
ADMIN_TOKEN_FILE = "admin-token"  # in the data dir: the first admin token, for the CLI to find


class TokenRecord(StoredStruct):
    """A token as kept in the tokens bucket, under its id."""

    id: str
    name: str
    scopes: list[str]
    secret_sha256: str
    created: int  # unix ms
    expires: int = 0  # unix ms; 0: never
    last_used: int = 0  # unix ms, written at most once a minute


class CreateTokenRequest(Struct):
    name: str
    scopes: list[str]
    expires_in_s: int | None = None


class TokenView(Struct):
    """A token as listed: everything but its secret (which is never kept)."""

    id: str
    name: str
    scopes: list[str]
    created: int
    expires: int
    last_used: int


class CreatedToken(TokenView):
    """The 201 of a create: the one time the secret is shown."""

    token: str


def nats_user_of(token_id: str) -> str:
    """The NATS user name of a token's connections (its id, never its secret)."""
    return f"{TOKEN_PREFIX}{token_id}"


def inbox_prefix_of(token_id: str) -> str:
    """The inbox a token's NATS connection must use: the only one it may subscribe to."""
    return f"_INBOX.{token_id}"


def token_view(record: TokenRecord) -> TokenView:
    return TokenView(
        id=record.id,
        name=record.name,
        scopes=record.scopes,
        created=record.created,
        expires=record.expires,
        last_used=record.last_used,
    )


@dataclass(frozen=True)
class Grants:
    """What a token may do, read once from its scopes."""

    admin: bool
    exact: frozenset[tuple[Action, str]]
    prefixes: tuple[tuple[Action, str], ...]  # ("invoke", "team-") for invoke:team-*

    @classmethod
    def of(cls, scopes: list[str]) -> Grants:
        exact: set[tuple[Action, str]] = set()
        prefixes: list[tuple[Action, str]] = []
        for scope in scopes:
            if scope == ADMIN:
                continue
            action, _, pattern = scope.partition(":")
            for granted in ("read", "deploy") if action == "deploy" else (action,):
                assert granted in ACTIONS
                if pattern.endswith("*"):
                    prefixes.append((granted, pattern[:-1]))
                else:
                    exact.add((granted, pattern))
        return cls(ADMIN in scopes, frozenset(exact), tuple(prefixes))

    def allows(self, action: Action, ct: str) -> bool:
        if self.admin or (action, ct) in self.exact:
            return True
        return any(a == action and ct.startswith(p) for a, p in self.prefixes)

    def sees(self, ct: str) -> bool:
        """Whether the collection exists for this token at all (any action on it)."""
        return any(self.allows(action, ct) for action in ACTIONS)


def check_scopes(scopes: list[str]) -> None:
    """Refuse an empty list, an unknown action or a bad collection pattern, naming the entry."""
    if not scopes:
        raise InvalidRequest("/scopes: a token needs at least one scope", [_detail(None)])
    if len(scopes) > MAX_SCOPES:
        raise InvalidRequest(f"/scopes: at most {MAX_SCOPES} scopes", [_detail(None)])
    for i, scope in enumerate(scopes):
        if scope == ADMIN:
            continue
        action, colon, pattern = scope.partition(":")
        reason = None
        if not colon or action not in ACTIONS:
            allowed = ", ".join(f"{a}:COLLECTIONS" for a in ACTIONS)
            reason = f"{scope!r} is not a scope: use {ADMIN} or one of {allowed}"
        elif not _PATTERN.fullmatch(pattern):
            reason = (
                f"{pattern!r} is not a collection pattern: a collection name, a prefix ending in"
                " * (team-*), or * for all"
            )
        if reason:
            raise InvalidRequest(f"/scopes/{i}: {reason}", [detail(f"/scopes/{i}", reason)])


def _detail(i: int | None) -> dict[str, str]:
    return detail("/scopes" if i is None else f"/scopes/{i}", "not a valid list of scopes")
