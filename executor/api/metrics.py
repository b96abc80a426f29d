"""Prometheus metrics of the API process, served at ``/metrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

INVOCATIONS = Counter(
    "computebus_api_invocations",
    "Invocations answered by this API process, by outcome code.",
    ["code"],
    registry=REGISTRY,
)
INVOKE_SECONDS = Histogram(
    "computebus_api_invoke_seconds",
    "Time from request to answer of synchronous invocations.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
FUNCTIONS_CREATED = Counter(
    "computebus_api_functions_created",
    "Functions created through this API process.",
    registry=REGISTRY,
)
