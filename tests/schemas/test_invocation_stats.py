"""Invocation stats from records: only finished ones count, by when they started; errors are the
failed ones; percentiles by nearest rank; every bucket present, oldest first; the step's bounds."""

from __future__ import annotations

import pytest

from schemas.errors import InvalidRequest
from schemas.invocation_stats import (
    MAX_BUCKETS,
    Sample,
    check_step,
    collection_stats,
    default_step,
    function_stats,
    nearest_rank,
)
from schemas.invocations import Status

SINCE = 1_700_000_000  # unix seconds


def sample(at_s: float, ms: float, status: Status = "succeeded", service: str = "1") -> Sample:
    return Sample(
        service=service, status=status, started=int((SINCE + at_s) * 1000), duration_ms=ms
    )


def test_nearest_rank_picks_a_value_that_was_seen() -> None:
    assert nearest_rank([], 50) is None
    assert nearest_rank([7.0], 50) == 7.0 and nearest_rank([7.0], 95) == 7.0
    assert nearest_rank([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    ordered = [float(i) for i in range(1, 101)]
    assert nearest_rank(ordered, 50) == 50.0
    assert nearest_rank(ordered, 95) == 95.0
    assert nearest_rank([1.0, 2.0, 3.0], 95) == 3.0
    assert nearest_rank([1.0, 2.0, 3.0], 0) == 1.0


def test_a_functions_stats_count_finished_records_in_their_buckets() -> None:
    samples = [
        sample(0, 10.0),  # the first instant of the window: bucket 0
        sample(59.999, 30.0, "failed"),  # still bucket 0
        sample(60, 20.0),  # bucket 1
        sample(130, 5.0, "running"),  # not finished: not counted
        sample(131, 5.0, "queued"),
        sample(179.9, 40.0, "failed"),  # bucket 2
        sample(-0.001, 99.0),  # before the window
        sample(180, 99.0),  # at until: after the window
    ]
    stats = function_stats(samples, since=SINCE, until=SINCE + 180, step_s=60, complete=True)
    assert (stats.window_s, stats.step_s, stats.since, stats.until) == (180, 60, SINCE, SINCE + 180)
    assert (stats.invocations, stats.errors, stats.error_rate) == (4, 2, 0.5)
    assert (stats.p50_ms, stats.p95_ms) == (20.0, 40.0)
    assert [b.t for b in stats.series] == [SINCE, SINCE + 60, SINCE + 120]
    assert [(b.invocations, b.errors) for b in stats.series] == [(2, 1), (1, 0), (1, 1)]
    assert [(b.p50_ms, b.p95_ms) for b in stats.series] == [
        (10.0, 30.0),
        (20.0, 20.0),
        (40.0, 40.0),
    ]
    assert stats.complete


def test_empty_buckets_are_there_with_nulls_and_no_invocations_is_no_error_rate() -> None:
    stats = function_stats([], since=SINCE, until=SINCE + 100, step_s=30, complete=False)
    assert len(stats.series) == 4  # the last one cut short at until
    assert stats.series[-1].t == SINCE + 90
    assert all(b.invocations == 0 and b.p50_ms is None and b.p95_ms is None for b in stats.series)
    assert (stats.invocations, stats.errors, stats.error_rate) == (0, 0, 0.0)
    assert stats.p50_ms is None and stats.p95_ms is None and not stats.complete
    late = function_stats(
        [sample(95, 1.0)], since=SINCE, until=SINCE + 100, step_s=30, complete=True
    )
    assert [b.invocations for b in late.series] == [0, 0, 0, 1]


def test_the_step_makes_at_most_max_buckets() -> None:
    assert default_step(3600) == 120 and default_step(60) == 2 and default_step(10) == 1
    assert check_step(3600, 120) == 30
    assert check_step(86_400, 173) == MAX_BUCKETS  # 172.8 s would be exactly 500
    with pytest.raises(InvalidRequest) as refused:
        check_step(86_400, 172)
    assert refused.value.details[0]["path"] == "?step"
    assert "at least 173" in refused.value.message


def test_a_collections_stats_have_a_row_per_known_function_with_invocations() -> None:
    samples = [
        sample(1, 10.0, service="200000000"),
        sample(2, 20.0, "failed", service="200000000"),
        sample(3, 30.0, service="200000000"),
        sample(4, 5.0, service="100000000"),
        sample(5, 5.0, "running", service="300000000"),  # only unfinished: no row
        sample(6, 5.0, service="400000000"),  # not a function of the collection (deleted)
    ]
    services = ["100000000", "200000000", "300000000", "500000000"]
    stats = collection_stats(
        samples, since=SINCE, until=SINCE + 60, services=services, complete=True
    )
    assert [row.service for row in stats.results] == ["100000000", "200000000"]
    second = stats.results[1]
    assert (second.invocations, second.errors, second.p50_ms, second.p95_ms) == (3, 1, 20.0, 30.0)
    assert second.error_rate == pytest.approx(1 / 3)
    assert stats.results_total == 2 and stats.window_s == 60 and stats.complete
