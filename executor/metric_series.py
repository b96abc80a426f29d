"""Counters and histograms kept as plain numbers in dicts, turned into Prometheus families only
when scraped.

prometheus-client's own ``Counter``/``Histogram`` take a lock on every ``inc`` and ``observe``,
and ``labels()`` looks its child up under another. Every invocation moves several series, on one
event loop, so the hot path here is a dict lookup and an addition; a scrape (in the loop for the
API, in the metrics thread for a worker) copies each dict first (one C call under the GIL), so a
series added meanwhile is seen at the next scrape.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence

from nats.aio.client import Client
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

Key = tuple[str, ...]

# Seconds: from well under a millisecond (a warm no-op) to the longest timeout (15 minutes).
SECONDS_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 900.0,
)  # fmt: skip

# The label values of invocations that named no function there is (a 404): one series for all.
NO_FUNCTION = ("", "")
# The label values of every function past the cap.
OTHER_FUNCTIONS = ("_other", "_other")


class FunctionLabels:
    """The (collection, function) label values of an invocation: its own for the first
    ``limit`` functions this process sees, ``_other`` for the rest, so that the number of series
    stays bounded however many functions there are."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._named: set[tuple[str, str]] = set()

    def of(self, ct: str, ft: str) -> tuple[str, str]:
        key = (ct, ft)
        if key in self._named:
            return key
        if len(self._named) < self.limit:
            self._named.add(key)
            return key
        return OTHER_FUNCTIONS

    def revision(self, labels: tuple[str, str], number: int) -> str:
        """A revision is labelled only on a function that is labelled by name."""
        return "" if labels == OTHER_FUNCTIONS or number <= 0 else str(number)


class Counters:
    """A counter family: one number per label values."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        self.name, self.documentation, self.labels = name, documentation, list(labels)
        self.values: dict[Key, float] = {}

    def inc(self, key: Key, amount: float = 1.0) -> None:
        values = self.values
        values[key] = values.get(key, 0.0) + amount

    def family(self) -> Metric:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for key, value in self.values.copy().items():
            family.add_metric(key, value)
        return family


class Histograms:
    """A histogram family: per label values, a count per bucket (not cumulative) and the sum."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str],
        buckets: Sequence[float] = SECONDS_BUCKETS,
    ) -> None:
        self.name, self.documentation, self.labels = name, documentation, list(labels)
        self.bounds = tuple(buckets)
        self.values: dict[Key, list[float]] = {}

    def observe(self, key: Key, value: float) -> None:
        row = self.values.get(key)
        if row is None:
            row = self.values[key] = [0.0] * (len(self.bounds) + 2)  # buckets, +Inf, sum
        row[bisect_left(self.bounds, value)] += 1
        row[-1] += value

    def family(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        for key, row in self.values.copy().items():
            row = list(row)
            cumulative, buckets = 0.0, []
            for bound, count in zip((*self.bounds, float("inf")), row[:-1], strict=True):
                cumulative += count
                buckets.append((_bound(bound), cumulative))
            family.add_metric(key, buckets, row[-1])
        return family


class Gauges:
    """A gauge family read when scraped: ``read`` gives the value per label values (a counter
    family with ``counter``, for a total someone else keeps)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str],
        read: Callable[[], Iterable[tuple[Key, float]]],
        *,
        counter: bool = False,
    ) -> None:
        self.name, self.documentation, self.labels = name, documentation, list(labels)
        self.read = read
        self.kind = CounterMetricFamily if counter else GaugeMetricFamily

    def family(self) -> Metric:
        family = self.kind(self.name, self.documentation, labels=self.labels)
        for key, value in self.read():
            family.add_metric(key, value)
        return family


class Families(Collector):
    """The families of one role, as one collector for a ``CollectorRegistry``."""

    def __init__(self, *families: Counters | Histograms | Gauges) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        for family in self.families:
            yield family.family()

    def describe(self) -> Iterator[Metric]:  # no scrape at registration
        return iter(())


def connection_gauges(nc: Client) -> list[Gauges]:
    """The state of a role's NATS connection (shared by the API's metrics)."""
    return [
        Gauges(
            "computebus_nats_connected",
            "1 while this process is connected to NATS.",
            (),
            lambda: [((), 1.0 if nc.is_connected else 0.0)],
        ),
        Gauges(
            "computebus_nats_reconnects",
            "Times this process reconnected to NATS since it started.",
            (),
            lambda: [((), float(nc.stats["reconnects"]))],
            counter=True,
        ),
    ]


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)
