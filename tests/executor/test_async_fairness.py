"""How a worker's Async slots are shared between functions with queued work."""

from __future__ import annotations

from executor.async_fairness import reserve_for_others, share_out


def test_free_slots_go_to_the_function_holding_fewest() -> None:
    assert share_out(3, {"a": 5, "b": 0}, ["a", "b"], cap=28) == {"b": 3}
    assert share_out(4, {"a": 1, "b": 0}, ["a", "b"], cap=28) == {"b": 2, "a": 2}


def test_ties_go_in_the_order_given() -> None:
    assert share_out(1, {}, ["b", "a"], cap=4) == {"b": 1}
    assert share_out(1, {}, ["a", "b"], cap=4) == {"a": 1}


def test_no_function_takes_more_than_the_cap() -> None:
    assert share_out(10, {"a": 26}, ["a"], cap=28) == {"a": 2}
    assert share_out(10, {"a": 28}, ["a"], cap=28) == {}
    assert share_out(5, {}, [], cap=28) == {}


def test_a_reserve_is_kept_for_other_functions() -> None:
    assert reserve_for_others(32) == 4
    assert reserve_for_others(4) == 1
    assert reserve_for_others(1) == 0
