"""User schemas run under a time budget: linear uniqueItems with JSON's equality, and a deadline
that stops a validation fanning out through references."""

from __future__ import annotations

import time
from typing import Any

import pytest

from schemas.validation import CompiledSchema
from schemas.validation_guards import ValidationTooSlow

UNIQUE = {"type": "array", "uniqueItems": True}


@pytest.mark.parametrize(
    ("value", "unique"),
    [
        ([1, 2, 3], True),
        ([1, 1.0], False),  # one number
        ([True, 1], True),  # a boolean is not a number
        ([False, 0, None], True),
        ([{"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1.0}], False),  # key order does not matter
        ([[1, 2], [2, 1]], True),  # element order does
        (["1", 1], True),
    ],
)
def test_unique_items_follows_json_equality(value: list[Any], unique: bool) -> None:
    assert (CompiledSchema(UNIQUE).errors(value) == []) is unique


def test_unique_items_is_linear() -> None:
    value = [{"a": i} for i in range(100_000)]
    started = time.perf_counter()
    assert CompiledSchema(UNIQUE).errors(value) == []
    assert time.perf_counter() - started < 5  # jsonschema's own check takes hours here


def fan_out(depth: int) -> dict[str, Any]:
    """Each level checks the next one twice: 2**depth checks of the same value."""
    defs: dict[str, Any] = {
        f"d{i}": {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}, {"$ref": f"#/$defs/d{i + 1}"}]}
        for i in range(depth)
    }
    defs[f"d{depth}"] = {"type": "object"}
    return {"$defs": defs, "$ref": "#/$defs/d0"}


def test_a_fan_out_of_references_stops_at_the_deadline() -> None:
    schema = CompiledSchema(fan_out(30))
    assert schema.can_be_slow
    started = time.monotonic()
    with pytest.raises(ValidationTooSlow):
        schema.errors({}, deadline=started + 0.2)
    assert time.monotonic() - started < 1.0
    assert CompiledSchema(fan_out(3)).errors({}) == []  # a small one still validates
