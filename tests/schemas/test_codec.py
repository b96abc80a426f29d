"""Decoding request bodies: a failure is an InvalidRequest naming the field and the reason."""

from __future__ import annotations

import pytest

from schemas.codec import decode_as, decode_json, is_json, json_pointer
from schemas.errors import InvalidRequest
from schemas.functions import CreateFunctionRequest
from schemas.invocations import InvokeRequest


def refusal(kind: type, body: bytes) -> tuple[str, list[dict[str, str]]]:
    with pytest.raises(InvalidRequest) as refused:
        decode_as(kind, body)
    return refused.value.message, refused.value.details


def test_msgspec_paths_become_json_pointers() -> None:
    assert (
        json_pointer("$.compute_asset.assets[3].asset_name") == "/compute_asset/assets/3/asset_name"
    )
    assert json_pointer("$.a~b.c") == "/a~0b/c" or json_pointer("$.a") == "/a"


def test_a_literal_names_its_allowed_values() -> None:
    message, details = refusal(InvokeRequest, b'{"invocation_type": "sync"}')
    assert message == "/invocation_type: must be one of Async, RequestResponse; got 'sync'"
    assert details == [{"path": "/invocation_type", "message": message.split(": ", 1)[1]}]


def test_missing_and_unknown_fields_are_named() -> None:
    message, _ = refusal(CreateFunctionRequest, b'{"name": "x"}')
    assert message == "/compute_asset: is required"
    message, _ = refusal(InvokeRequest, b'{"payload": 1, "typo": 2}')
    assert message == "/typo: is not a known field"


def test_bad_json_and_bad_utf8_are_invalid_requests() -> None:
    message, _ = refusal(InvokeRequest, b'{"payload": ')
    assert message.startswith("body is not valid JSON")
    with pytest.raises(InvalidRequest):
        decode_json(b"[1, 2", "/payload")
    assert is_json(b"[1, 2]") and not is_json(b"[1, 2")


def test_nesting_too_deep_is_refused_not_a_recursion_error() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(InvalidRequest):
        decode_json(deep)
