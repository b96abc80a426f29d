"""How a worker's Async slots are shared between functions with queued work."""

from __future__ import annotations

from executor.worker.fair_share import reserve_for_newcomers, share_out


def test_free_slots_go_to_the_function_holding_fewest() -> None:
    assert share_out(6, {"a": 20}, ["a", "b"], slots=26) == {"b": 3}
    assert share_out(4, {"a": 1}, ["a", "b"], slots=5) == {"b": 2, "a": 1}


def test_ties_go_in_the_order_given() -> None:
    assert share_out(1, {}, ["b", "a"], slots=4) == {"b": 1}
    assert share_out(1, {}, ["a", "b"], slots=4) == {"a": 1}


def test_the_last_eighth_is_kept_for_functions_holding_none() -> None:
    assert share_out(32, {}, ["a"], slots=32) == {"a": 28}
    assert share_out(4, {"a": 28}, ["a"], slots=32) == {}
    # Two floods together still leave the reserve: they share the 28.
    assert share_out(32, {}, ["a", "b"], slots=32) == {"a": 14, "b": 14}
    assert share_out(4, {"a": 14, "b": 14}, ["a", "b", "c"], slots=32) == {"c": 1}
    assert share_out(3, {"a": 14, "b": 14, "c": 1}, ["d", "e", "f"], slots=32) == {
        "d": 1,
        "e": 1,
        "f": 1,
    }
    assert share_out(5, {}, [], slots=32) == {}


def test_the_reserve_is_an_eighth() -> None:
    assert reserve_for_newcomers(32) == 4
    assert reserve_for_newcomers(4) == 1
    assert reserve_for_newcomers(1) == 0
