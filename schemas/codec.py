"""Encoders and decoders, built once and shared; decode errors become ``InvalidRequest``."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from schemas.errors import InvalidRequest, detail

T = TypeVar("T")

json_encoder = msgspec.json.Encoder()
json_decoder = msgspec.json.Decoder()
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}

_PATH_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[\.\.\.\]")
_MISSING = re.compile(r"missing required field `([^`]+)`")
_UNKNOWN = re.compile(r"unknown field `([^`]+)`")


def encode(value: Any) -> bytes:
    return json_encoder.encode(value)


def decoder_for(kind: type[T]) -> msgspec.json.Decoder[T]:
    dec = _decoders.get(kind)
    if dec is None:
        dec = _decoders[kind] = msgspec.json.Decoder(kind)
    return dec


def decode_as(kind: type[T], data: bytes | str, where: str = "") -> T:
    """Decode ``data`` into ``kind``; a failure names the JSON pointer of the offending field."""
    try:
        return decoder_for(kind).decode(data)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(*_describe(str(exc), where)) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # msgspec lets bad UTF-8 through
        raise InvalidRequest(
            f"body is not valid JSON: {exc}", [detail(where or "/", str(exc))]
        ) from None
    except RecursionError:
        raise nested_too_deeply(where or "body") from None


def decode_json(data: bytes | str, where: str = "") -> Any:
    try:
        return json_decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(
            f"{where or 'body'} is not valid JSON: {exc}", [detail(where or "/", str(exc))]
        ) from None
    except RecursionError:
        raise nested_too_deeply(where or "body") from None


def is_json(data: bytes) -> bool:
    try:
        json_decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return False
    return True


def nested_too_deeply(where: str) -> InvalidRequest:
    reason = "is nested too deeply (arrays and objects inside each other)"
    return InvalidRequest(
        f"{where} {reason}", [detail(where if where.startswith("/") else "/", reason)]
    )


def json_pointer(msgspec_path: str) -> str:
    """``$.a.b[0].c`` -> ``/a/b/0/c``."""
    parts = [m.group(1) or m.group(2) or "" for m in _PATH_PART.finditer(msgspec_path)]
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def _describe(message: str, where: str) -> tuple[str, list[dict[str, Any]]]:
    reason, _, at = message.partition(" - at `")
    pointer = where + json_pointer(at.rstrip("`")) if at else where
    named = _MISSING.search(reason) or _UNKNOWN.search(reason)
    if named:
        pointer = f"{pointer}/{named.group(1)}"
    field = pointer or "/"
    return f"{field}: {reason}", [detail(field, reason)]
