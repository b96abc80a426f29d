"""The API tokens bucket, and a copy of it fed by a KV watch on every API process, so that a
token check never waits on the bus and a revoke or an expiry holds everywhere within moments.

A token reads ``cbt_<id>_<secret>``: the id names its record, the secret (32 random bytes) is
kept only as its SHA-256 and compared in constant time.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable

import msgspec
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from bus import subjects
from bus.kv import KvFollower, open_bucket
from schemas.codec import decoder_for, encode
from schemas.errors import ComputebusError
from schemas.tokens import ADMIN, TOKEN_PREFIX, CreatedToken, TokenRecord, token_view

log = logging.getLogger("computebus.tokens")

_ID_BYTES = 8
_SECRET_BYTES = 32
_MAX_TOKEN_CHARS = 128


def new_token() -> tuple[str, str, str]:
    """A fresh ``(id, token, sha256 of its secret)``."""
    token_id = secrets.token_hex(_ID_BYTES)
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    return token_id, f"{TOKEN_PREFIX}{token_id}_{secret}", _digest(secret)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a well-formed token, else None."""
    if len(token) > _MAX_TOKEN_CHARS or not token.startswith(TOKEN_PREFIX):
        return None
    token_id, sep, secret = token[len(TOKEN_PREFIX) :].partition("_")
    if not sep or len(token_id) != 2 * _ID_BYTES or not secret:
        return None
    return token_id, secret


class TokenStore:
    """Tokens by id in a KV bucket, and the watch-fed copy that checks use."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        self._records: dict[str, TokenRecord] = {}
        self._seqs: dict[str, int] = {}  # each record's KV sequence, for touch's compare-and-set
        self._follower = KvFollower(kv, subjects.TOKENS_BUCKET, self._apply)
        self.on_removed: list[Callable[[str], None]] = []  # called with a revoked token's id

    @classmethod
    async def open(cls, js: JetStreamContext, *, replicas: int | None = None) -> TokenStore:
        store = cls(await open_bucket(js, subjects.TOKENS_BUCKET, replicas=replicas))
        await store._follower.start()
        return store

    async def close(self) -> None:
        await self._follower.close()

    def _apply(self, key: str, value: bytes | None, seq: int) -> None:
        if value is None:
            self._forget(key)
        else:
            self._records[key] = decoder_for(TokenRecord).decode(value)
            self._seqs[key] = seq

    def _forget(self, token_id: str) -> None:
        self._seqs.pop(token_id, None)
        if self._records.pop(token_id, None) is not None:
            for callback in self.on_removed:
                callback(token_id)

    def verify(self, token: str) -> TokenRecord | None:
        """The record of a token that exists, matches and has not expired; else None."""
        parts = split_token(token)
        if parts is None:
            return None
        record = self._records.get(parts[0])
        if record is None or not hmac.compare_digest(record.secret_sha256, _digest(parts[1])):
            return None
        return record if live(record) else None

    def get(self, token_id: str) -> TokenRecord | None:
        """The current record of ``token_id`` (None once revoked): for what a check cached."""
        return self._records.get(token_id)

    def all(self) -> list[TokenRecord]:
        return sorted(self._records.values(), key=lambda r: (r.created, r.id))

    async def issue(self, name: str, scopes: list[str], expires_in_s: int | None) -> CreatedToken:
        """Make a token and store its record; the secret leaves only in the answer."""
        now = int(time.time() * 1000)
        token_id, token, digest = new_token()
        record = TokenRecord(
            id=token_id,
            name=name,
            scopes=scopes,
            secret_sha256=digest,
            created=now,
            expires=now + expires_in_s * 1000 if expires_in_s else 0,
        )
        await self.put(record)
        return CreatedToken(token=token, **msgspec.structs.asdict(token_view(record)))

    async def put(self, record: TokenRecord) -> None:
        self._seqs[record.id] = await self.kv.put(record.id, encode(record))
        self._records[record.id] = record  # our own reads see our write at once

    async def touch(self, token_id: str) -> None:
        """Note that the token was just used; never brings back a token revoked meanwhile."""
        record, seq = self._records.get(token_id), self._seqs.get(token_id)
        if record is None or seq is None:
            return
        used = msgspec.structs.replace(record, last_used=int(time.time() * 1000))
        with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError):
            await self.kv.update(token_id, encode(used), last=seq)

    async def revoke(self, token_id: str) -> None:
        """Revoke; refused (``LastAdmin``) for the last admin token that does not expire.

        Checked again on the bus after the delete, and undone if no such admin is left: two
        revokes at once on two APIs, each seeing the other's token, leave one of them."""
        record = self._records.get(token_id)
        keep = record is not None and lasting_admin(record)
        if keep and not any(lasting_admin(r) and r.id != token_id for r in self.all()):
            raise LastAdmin(token_id)
        await self.kv.delete(token_id)
        self._forget(token_id)
        if keep and record is not None and not await self._lasting_admin_on_bus():
            await self.put(record)
            raise LastAdmin(token_id)

    async def _lasting_admin_on_bus(self) -> bool:
        try:
            keys = await self.kv.keys()
        except nats.js.errors.NoKeysError:
            return False
        for key in keys:
            with contextlib.suppress(nats.js.errors.KeyNotFoundError, msgspec.DecodeError):
                entry = await self.kv.get(key)
                if entry.value and lasting_admin(decoder_for(TokenRecord).decode(entry.value)):
                    return True
        return False


class LastAdmin(ComputebusError):
    """Revoking this token would leave no admin token that does not expire: no way in."""


def lasting_admin(record: TokenRecord) -> bool:
    return ADMIN in record.scopes and record.expires == 0


def live(record: TokenRecord, now_ms: int | None = None) -> bool:
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return record.expires == 0 or now < record.expires
