"""The rules ids follow: collection topics, service ids, invocation ids, and the alias plain
invokes use. No I/O."""

from __future__ import annotations

import re

COLLECTION_TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SERVICE_ID = re.compile(r"^[0-9]{9}$")
INVOCATION_ID = COLLECTION_TOPIC  # the same alphabet and length
DEFAULT_ALIAS = "production"
# Path words beside invocation ids (``.../invocations/live``): never an invocation's id, or its
# record could not be read by id.
RESERVED_INVOCATION_IDS = frozenset({"live"})


def is_function_ref(ct: str, ft: str) -> bool:
    """Whether ``ct``/``ft`` can name a function at all."""
    return bool(COLLECTION_TOPIC.fullmatch(ct) and SERVICE_ID.fullmatch(ft))


def is_invocation_id(value: str) -> bool:
    return bool(INVOCATION_ID.fullmatch(value)) and value not in RESERVED_INVOCATION_IDS
