"""The roles' shared secret (a key only the API and worker users can read), and what it is for.

Who called, carried from the API to the worker so that an invocation's record can say: the API
puts the caller (the token's id and name) in ``Compute-Caller`` and seals it with an HMAC over
the invocation id under a key that only the API and worker users can read (the client user may
not touch JetStream). A header that is missing or not sealed by that key means the call came
over NATS straight from a client, and the record says so, with the user nats-server stamped on
the request as it crossed from the APP account (``Nats-Request-Info``, which the server writes
over whatever a client sent).
"""

from __future__ import annotations

import contextlib
import hmac
import secrets

import msgspec
import nats.js.errors
from nats.js import JetStreamContext

from bus import subjects
from bus.kv import open_bucket
from schemas.codec import decoder_for, encode
from schemas.headers import H_CALLER, H_CALLER_SEAL, H_NATS_CLIENT
from schemas.invocations import CallerInfo
from schemas.tokens import TOKEN_PREFIX

_KEY = "caller-seal-key"
_NATS = CallerInfo(via="nats")


class CallerSeal:
    """Seals and opens the caller header of invocations with the bus's shared key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    async def open(cls, js: JetStreamContext, *, replicas: int = 1) -> CallerSeal:
        """The shared key, made by whichever role starts first."""
        kv = await open_bucket(js, subjects.INTERNAL_BUCKET, replicas=replicas)
        with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError):
            await kv.create(_KEY, secrets.token_bytes(32))  # unless another role made it first
        entry = await kv.get(_KEY)
        assert entry.value is not None
        return cls(entry.value)

    def _mac(self, invocation_id: str, caller: bytes) -> str:
        message = invocation_id.encode() + b"\n" + caller
        return hmac.digest(self._key, message, "sha256").hex()

    def keyed_id(self, *parts: str) -> str:
        """An id derived from ``parts`` that only holders of the key can compute (an
        Idempotency-Key's invocation id)."""
        message = "\0".join(parts).encode()
        return hmac.digest(self._key, b"id\0" + message, "sha256").hex()[:32]

    def headers(self, invocation_id: str, caller: CallerInfo) -> dict[str, str]:
        """The two headers that carry ``caller`` with an invocation."""
        data = encode(caller)
        return {H_CALLER: data.decode(), H_CALLER_SEAL: self._mac(invocation_id, data)}

    def caller(self, headers: dict[str, str] | None, invocation_id: str) -> CallerInfo:
        """The caller the headers were sealed with; a NATS client's call without them."""
        if not headers:
            return _NATS
        if H_CALLER not in headers:
            return nats_caller(headers)
        data = headers[H_CALLER].encode()
        given = headers.get(H_CALLER_SEAL, "")
        if not hmac.compare_digest(given, self._mac(invocation_id, data)):
            return nats_caller(headers)
        try:
            return decoder_for(CallerInfo).decode(data)
        except msgspec.DecodeError:  # sealed by a newer version in a shape this one cannot read
            return _NATS


def nats_caller(headers: dict[str, str]) -> CallerInfo:
    """The NATS user the server says sent a request from the APP account, if it says."""
    stamped = headers.get(H_NATS_CLIENT)
    if not stamped:
        return _NATS
    try:
        user = decoder_for(_StampedClient).decode(stamped).user
    except msgspec.DecodeError:
        return _NATS
    if not user:
        return _NATS
    if user.startswith(TOKEN_PREFIX):
        return CallerInfo(via="nats", user=user, token_id=user[len(TOKEN_PREFIX) :])
    return CallerInfo(via="nats", user=user)


class _StampedClient(msgspec.Struct):
    user: str = ""
