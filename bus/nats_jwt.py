"""The JWTs of nats-server's auth callout: claims signed with an account nkey (ed25519)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from typing import Any

import nkeys

_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}


def new_account_seed() -> bytes:
    """A fresh account nkey seed (``SA...``): the callout's issuer."""
    return bytes(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_ACCOUNT))


def public_key(seed: bytes) -> str:
    return bytes(nkeys.from_seed(bytearray(seed)).public_key).decode()


def encode(claims: dict[str, Any], seed: bytes) -> str:
    """``claims`` issued and signed by the account of ``seed``, with ``iat`` and ``jti`` set."""
    keys = nkeys.from_seed(bytearray(seed))
    issued = {**claims, "iss": bytes(keys.public_key).decode(), "iat": int(time.time())}
    digest = hashlib.sha256(_compact(issued)).digest()
    issued["jti"] = base64.b32encode(digest).decode().rstrip("=")
    head_and_body = f"{_b64(_compact(_HEADER))}.{_b64(_compact(issued))}"
    signature = bytes(keys.sign(head_and_body.encode()))
    return f"{head_and_body}.{_b64(signature)}"


def claims_of(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified: the auth request reaches only the callout's account, on
    a subject that nothing but the server (and the trusted roles) may publish."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a JWT")
    claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    if not isinstance(claims, dict):
        raise ValueError("JWT claims are not an object")
    return claims


def _compact(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")
