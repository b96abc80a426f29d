"""The schema compatibility gate: each detected narrowing, and what is not a break."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.compatibility import incompatibilities, narrowing

OBJ: dict[str, Any] = {
    "type": "object",
    "properties": {"a": {"type": "string"}, "n": {"type": "number", "minimum": 0}},
    "required": ["a"],
}


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**base, **changes}


@pytest.mark.parametrize(
    ("new", "path", "word"),
    [
        (with_(OBJ, required=["a", "b"]), "/required", "b"),
        (with_(OBJ, type="array"), "/type", "object"),
        (
            with_(OBJ, properties={**OBJ["properties"], "a": {"type": "string", "enum": ["x"]}}),
            "/properties/a/enum",
            "enum",
        ),
        (with_(OBJ, additionalProperties=False), "/additionalProperties", "refused"),
        (
            with_(OBJ, properties={"a": {"type": "string"}}, additionalProperties=False),
            "/properties/n",
            "removed",
        ),
        (
            with_(OBJ, properties={**OBJ["properties"], "n": {"type": "number", "minimum": 5}}),
            "/properties/n/minimum",
            "rises",
        ),
        (
            with_(OBJ, properties={**OBJ["properties"], "a": {"type": "string", "maxLength": 3}}),
            "/properties/a/maxLength",
            "falls",
        ),
        (
            with_(OBJ, properties={**OBJ["properties"], "a": {"type": "string", "pattern": "^x"}}),
            "/properties/a/pattern",
            "pattern",
        ),
        (
            with_(OBJ, properties={**OBJ["properties"], "n": {"type": "integer"}}),
            "/properties/n/type",
            "number",
        ),
        (False, "/", "everything"),
    ],
)
def test_each_narrowing_is_detected(new: Any, path: str, word: str) -> None:
    found = dict(narrowing(OBJ, new))
    assert path in found, found
    assert word in found[path]
    # Only that change (and additionalProperties, which the removal case also sets) is reported.
    assert set(found) <= {path, "/additionalProperties"}


@pytest.mark.parametrize(
    "new",
    [
        OBJ,
        with_(OBJ, required=[]),  # fewer required fields
        with_(OBJ, type=["object", "null"]),  # a type added
        with_(OBJ, properties={**OBJ["properties"], "z": {"type": "string"}}),  # new optional
        with_(OBJ, properties={**OBJ["properties"], "n": {"type": "number", "minimum": -1}}),
        None,  # no schema accepts everything
    ],
)
def test_widening_is_compatible(new: Any) -> None:
    assert narrowing(OBJ, new) == []


def test_output_is_compared_the_other_way() -> None:
    old_out = {"type": "object", "required": ["id"]}
    assert incompatibilities(None, None, old_out, {"type": "object"}) == [
        {"path": "/schema/output/required", "message": "allows more: required gains id"}
    ]
    assert incompatibilities(None, None, {"type": "object"}, old_out) == []
    # No schema before: any new constraint narrows.
    paths = {p["path"] for p in incompatibilities(None, OBJ, None, None)}
    assert paths == {"/schema/input/required", "/schema/input/type"}
