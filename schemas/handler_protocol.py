"""Frames between a worker and a handler process, over the dedicated request and reply pipes.

Each frame is a 4-byte big-endian length, an 8-byte nonce and a JSON document. The first request
a process gets is its ``Assignment`` (a spare process starts before anyone knows which revision
it will serve); every later one is an invocation (or a load check). The worker draws
a fresh random nonce for every request and the reply must carry it back: a frame the worker did
not ask for, or one with another request's nonce, is a forgery by the handler's own code (which
shares the process with the bootstrap) and kills the process. The event and the result travel
as raw JSON so the worker never re-encodes a payload it has already validated.
"""

from __future__ import annotations

import struct

import msgspec

from schemas.base import Struct
from schemas.invocations import HandlerContext

HEADER = struct.Struct(">I8s")
NONCE_BYTES = 8


class Assignment(Struct):
    """What makes a started process one revision's: its workspace as the process sees it, the
    handler's file (relative to it) and export, and the function's env_vars (``NAME=VALUE``),
    set before the handler loads. Sent once, first, over the process's own request pipe."""

    workspace: str
    file: str
    export: str
    env: list[str]


class AssignRequest(Struct):
    assign: Assignment


class HandlerRequest(Struct):
    event: msgspec.Raw
    context: HandlerContext


class HandlerError(Struct):
    code: str
    type: str
    message: str


class HandlerReply(Struct):
    ok: bool
    result: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))
    error: HandlerError | None = None


request_encoder = msgspec.json.Encoder()
# Asks a handler process to load its handler and answer without calling it.
PROBE_REQUEST = b'{"probe":true}'
reply_decoder = msgspec.json.Decoder(HandlerReply)


def frame(body: bytes, nonce: bytes) -> bytes:
    return HEADER.pack(len(body), nonce) + body
