"""Which subjects a subject trigger may take, and when two subject patterns share a subject."""

from __future__ import annotations

import pytest

from schemas.errors import InvalidRequest
from schemas.triggers import check_source, subjects_collide


@pytest.mark.parametrize(
    ("a", "b", "collide"),
    [
        ("orders.created", "orders.created", True),
        ("orders.*", "orders.created", True),
        ("orders.*", "orders.created.eu", False),
        ("orders.>", "orders.created.eu", True),
        ("orders.>", "orders", False),
        ("*.created", "orders.*", True),
        (">", "ms.compute.>", True),
        ("ms.*", "ms.compute.>", False),
        ("ms.>", "ms.compute.>", True),
        ("$JS.API.INFO", "$*.>", True),
        ("JS.API", "$*.>", False),
    ],
)
def test_two_patterns_collide_when_one_subject_matches_both(a: str, b: str, collide: bool) -> None:
    assert subjects_collide(a, b) is collide
    assert subjects_collide(b, a) is collide


@pytest.mark.parametrize("source", ["orders.created", "orders.*", "orders.>", "a.b.c.d.e.f", "*"])
def test_a_plain_subject_or_pattern_is_taken_as_it_is(source: str) -> None:
    assert check_source(source) == source


@pytest.mark.parametrize(
    "source",
    ["", " ", "a..b", ".a", "a.", "a b", "a.b*", "a.>.b", "a.b.c.d.e.f.g", "_R_.x", "$KV.x.y"],
)
def test_anything_else_is_a_400_naming_source(source: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        check_source(source)
    assert raised.value.details[0]["path"] == "/source"
