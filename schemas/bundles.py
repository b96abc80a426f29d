"""A bundle: the decoded files of a function, as stored (content-addressed) in the bundle store."""

from __future__ import annotations

import hashlib
from typing import Literal

import msgspec

from schemas.base import Struct

FileKind = Literal["file", "archive", "link"]


class BundleFile(Struct, array_like=True):
    name: str
    kind: FileKind
    data: bytes


class Bundle(Struct, array_like=True):
    files: list[BundleFile]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Bundle)


def encode_bundle(bundle: Bundle) -> bytes:
    return _encoder.encode(bundle)


def decode_bundle(data: bytes) -> Bundle:
    return _decoder.decode(data)


def bundle_digest(encoded: bytes) -> str:
    """The bundle's address: sha256 of its canonical encoding (same files -> same digest)."""
    return hashlib.sha256(encoded).hexdigest()
