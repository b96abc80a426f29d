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


def test_a_backtracking_pattern_stops_at_the_deadline_instead_of_holding_the_worker() -> None:
    schema = CompiledSchema({"type": "string", "pattern": "(x+x+)+y"})
    started = time.monotonic()
    with pytest.raises(ValidationTooSlow, match="did not finish matching"):
        schema.errors("x" * 1000 + "!", deadline=time.monotonic() + 0.2)
    assert time.monotonic() - started < 5  # not the hours the backtracking would take


def test_a_remote_ref_is_refused_at_create_and_never_fetched() -> None:
    from schemas.errors import InvalidRequest
    from schemas.schema_checks import check_schema

    with pytest.raises(InvalidRequest) as info:
        check_schema({"$ref": "http://127.0.0.1:9/schema.json"}, "/schema/input")
    assert info.value.details[0]["path"].startswith("/schema/input")


def test_errors_name_each_failing_location_as_a_json_pointer() -> None:
    schema = CompiledSchema(
        {"type": "object", "properties": {"a/b": {"type": "integer"}, "c": {"type": "array"}}}
    )
    found = schema.errors({"a/b": "x", "c": 1})
    assert sorted(d["path"] for d in found) == ["/a~1b", "/c"]
    assert CompiledSchema({}).errors(object()) == []  # an empty schema checks nothing
