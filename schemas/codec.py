"""Encoders and decoders, built once and shared; decode errors become ``InvalidRequest``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any, TypeVar

import msgspec
import msgspec.inspect

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
        raise InvalidRequest(*_describe(str(exc), where, kind)) from None
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


def pointer_of(parts: Iterable[object]) -> str:
    """The JSON pointer (RFC 6901) of a path of keys and indexes: ``a/b``, 0 -> ``/a~1b/0``."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def json_pointer(msgspec_path: str) -> str:
    """``$.a.b[0].c`` -> ``/a/b/0/c``."""
    return pointer_of(m.group(1) or m.group(2) or "" for m in _PATH_PART.finditer(msgspec_path))


def _describe(message: str, where: str, kind: Any) -> tuple[str, list[dict[str, Any]]]:
    reason, _, at = message.partition(" - at `")
    path = at.rstrip("`")
    pointer = where + json_pointer(path) if at else where
    if missing := _MISSING.search(reason):
        pointer = f"{pointer}/{missing.group(1)}"
        reason = "is required"
    elif unknown := _UNKNOWN.search(reason):
        pointer = f"{pointer}/{unknown.group(1)}"
        reason = "is not a known field"
    elif reason.startswith("Invalid enum value"):
        allowed = _literal_values(kind, json_pointer(path))
        if allowed:
            given = reason.removeprefix("Invalid enum value").strip()
            reason = f"must be one of {', '.join(allowed)}; got {given}"
    field = pointer or "/"
    return f"{field}: {reason}", [detail(field, reason)]


def _literal_values(kind: Any, pointer: str) -> list[str]:
    """The values a Literal field at ``pointer`` (within ``kind``) allows, or []."""
    info: Any = msgspec.inspect.type_info(kind)
    for part in pointer.strip("/").split("/") if pointer.strip("/") else []:
        info = _step(info, part)
        if info is None:
            return []
    info = _unwrap(info)
    if isinstance(info, msgspec.inspect.LiteralType):
        return [str(v) for v in info.values]
    return []


def _step(info: Any, part: str) -> Any:
    info = _unwrap(info)
    if isinstance(info, msgspec.inspect.StructType):
        for field in info.fields:
            if field.encode_name == part:
                return field.type
        return None
    if isinstance(info, msgspec.inspect.ListType | msgspec.inspect.VarTupleType):
        return info.item_type
    if isinstance(info, msgspec.inspect.DictType):
        return info.value_type
    return None


def _unwrap(info: Any) -> Any:
    """An optional or unset-able field's own type."""
    if isinstance(info, msgspec.inspect.UnionType):
        kept = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        if len(kept) == 1:
            return kept[0]
    return info


def unix_seconds(rfc3339: str) -> float:
    """A JetStream timestamp (RFC 3339 in UTC, up to nanoseconds: more than ``fromisoformat``
    reads) as unix seconds; 0 when it cannot be read."""
    head, _, fraction = rfc3339.rstrip("Z").partition(".")
    try:
        return datetime.fromisoformat(head + "+00:00").timestamp() + float("0." + (fraction or "0"))
    except ValueError:
        return 0.0
