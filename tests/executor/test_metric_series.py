"""The lock-free series: what a scrape reads back through prometheus-client's own parser."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from executor.metric_series import (
    OTHER_FUNCTIONS,
    Counters,
    Families,
    FunctionLabels,
    Gauges,
    Histograms,
)


def exposition(*families: Counters | Histograms | Gauges) -> dict[tuple[str, str], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Families(*families))
    text = generate_latest(registry).decode()
    return {
        (sample.name, ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_counters_and_gauges_read_back_per_label_values() -> None:
    calls = Counters("demo_calls", "Calls.", ("function", "code"))
    calls.inc(("a", "ok"))
    calls.inc(("a", "ok"))
    calls.inc(("b", "timeout"), 3)
    depth = Gauges("demo_depth", "Depth.", (), lambda: [((), 7.0)])
    found = exposition(calls, depth)
    assert found[("demo_calls_total", "code=ok,function=a")] == 2
    assert found[("demo_calls_total", "code=timeout,function=b")] == 3
    assert found[("demo_depth", "")] == 7


def test_histogram_buckets_are_cumulative_and_count_every_observation() -> None:
    seconds = Histograms("demo_seconds", "Time.", ("function",), buckets=(0.01, 0.1, 1.0))
    for observed in (0.005, 0.01, 0.05, 0.5, 2.0):  # 0.01 itself falls in le="0.01"
        seconds.observe(("a",), observed)
    found = exposition(seconds)
    buckets = {
        labels.split("le=")[1]: v for (name, labels), v in found.items() if name.endswith("bucket")
    }
    assert buckets == {"0.01": 2, "0.1": 3, "1.0": 4, "+Inf": 5}
    assert found[("demo_seconds_count", "function=a")] == 5
    assert abs(found[("demo_seconds_sum", "function=a")] - 2.565) < 1e-9


def test_function_labels_stop_at_the_cap_and_the_rest_share_one_series() -> None:
    labels = FunctionLabels(limit=2)
    assert labels.of("c", "1") == ("c", "1")
    assert labels.of("c", "2") == ("c", "2")
    assert labels.of("c", "3") == OTHER_FUNCTIONS
    assert labels.of("c", "1") == ("c", "1")  # the first ones keep their own
    assert labels.revision(("c", "1"), 4) == "4"
    assert labels.revision(OTHER_FUNCTIONS, 4) == ""  # no revision series past the cap
