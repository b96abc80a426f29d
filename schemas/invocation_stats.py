"""Invocation stats from monitor records: counts, error rate and latency percentiles over a
window, for one function (with a series of equal buckets) or per function of a collection.

Only finished records count (``succeeded`` or ``failed``; errors are the failed ones), placed by
``started`` and measured by ``duration_ms``. Percentiles are by nearest rank, so each is the
duration of a record that was read. Pure: the caller reads the records and says what "now" is.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

from schemas.base import StoredStruct, Struct
from schemas.errors import InvalidRequest, detail
from schemas.invocations import Status

MAX_BUCKETS = 500
DEFAULT_BUCKETS = 30  # the default step is a window's thirtieth


class Sample(StoredStruct):
    """A monitor record as the stats read it: only what they count (decoding the rest, logs
    and payloads among it, would cost more than the counting)."""

    service: str
    status: Status
    started: int  # unix ms
    duration_ms: float = 0.0


class Bucket(Struct):
    t: int  # its start, unix seconds
    invocations: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None


class FunctionStats(Struct):
    window_s: int
    step_s: int
    since: int  # unix seconds; records that started in [since, until) count
    until: int
    invocations: int
    errors: int
    error_rate: float
    p50_ms: float | None
    p95_ms: float | None
    series: list[Bucket]  # every bucket, oldest first
    complete: bool  # false: the records could not all be read in time; counts are of those read


class ServiceStats(Struct):
    service: str
    invocations: int
    errors: int
    error_rate: float
    p50_ms: float | None
    p95_ms: float | None


class CollectionStats(Struct):
    results: list[ServiceStats]  # by service id
    results_total: int
    window_s: int
    complete: bool


def default_step(window_s: int) -> int:
    return max(1, window_s // DEFAULT_BUCKETS)


def check_step(window_s: int, step_s: int) -> int:
    """How many buckets ``step_s`` cuts the window into; more than ``MAX_BUCKETS`` is a 400."""
    buckets = math.ceil(window_s / step_s)
    if buckets > MAX_BUCKETS:
        least = math.ceil(window_s / MAX_BUCKETS)
        reason = f"makes {buckets} buckets of a {window_s} s window; at most {MAX_BUCKETS}"
        raise InvalidRequest(
            f"query parameter step {reason} (step at least {least})",
            [detail("?step", f"{reason}: at least {least}")],
        )
    return buckets


def nearest_rank(ordered: Sequence[float], percent: float) -> float | None:
    """The ``percent`` percentile of ascending ``ordered`` by nearest rank; None of nothing."""
    if not ordered:
        return None
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


class _Tally:
    __slots__ = ("durations", "errors")

    def __init__(self) -> None:
        self.durations: list[float] = []
        self.errors = 0

    def add(self, sample: Sample) -> None:
        self.durations.append(sample.duration_ms)
        self.errors += sample.status == "failed"

    def summary(self) -> tuple[int, int, float, float | None, float | None]:
        """invocations, errors, error rate, p50, p95."""
        ordered = sorted(self.durations)
        count = len(ordered)
        rate = self.errors / count if count else 0.0
        return count, self.errors, rate, nearest_rank(ordered, 50), nearest_rank(ordered, 95)


def _finished_within(samples: Iterable[Sample], since: int, until: int) -> Iterable[Sample]:
    low, high = since * 1000, until * 1000
    for sample in samples:
        if sample.status in ("succeeded", "failed") and low <= sample.started < high:
            yield sample


def function_stats(
    samples: Iterable[Sample], *, since: int, until: int, step_s: int, complete: bool
) -> FunctionStats:
    """One function's stats over [since, until) in buckets of ``step_s`` from ``since`` (the
    last one cut short at ``until`` when the window is not a whole number of steps)."""
    window_s = until - since
    buckets = [_Tally() for _ in range(check_step(window_s, step_s))]
    whole = _Tally()
    for sample in _finished_within(samples, since, until):
        buckets[(sample.started - since * 1000) // (step_s * 1000)].add(sample)
        whole.add(sample)
    series = []
    for i, tally in enumerate(buckets):
        count, errors, _, p50, p95 = tally.summary()
        series.append(
            Bucket(t=since + i * step_s, invocations=count, errors=errors, p50_ms=p50, p95_ms=p95)
        )
    count, errors, rate, p50, p95 = whole.summary()
    return FunctionStats(
        window_s=window_s,
        step_s=step_s,
        since=since,
        until=until,
        invocations=count,
        errors=errors,
        error_rate=rate,
        p50_ms=p50,
        p95_ms=p95,
        series=series,
        complete=complete,
    )


def collection_stats(
    samples: Iterable[Sample],
    *,
    since: int,
    until: int,
    services: Iterable[str],
    complete: bool,
) -> CollectionStats:
    """A row for each of ``services`` with finished invocations in [since, until)."""
    wanted = set(services)
    tallies: defaultdict[str, _Tally] = defaultdict(_Tally)
    for sample in _finished_within(samples, since, until):
        if sample.service in wanted:
            tallies[sample.service].add(sample)
    rows = []
    for service in sorted(tallies):
        count, errors, rate, p50, p95 = tallies[service].summary()
        rows.append(
            ServiceStats(
                service=service,
                invocations=count,
                errors=errors,
                error_rate=rate,
                p50_ms=p50,
                p95_ms=p95,
            )
        )
    return CollectionStats(
        results=rows, results_total=len(rows), window_s=until - since, complete=complete
    )
