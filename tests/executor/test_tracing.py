"""Where spans go: the endpoint setting read from computebus's own variable or OpenTelemetry's,
and no OpenTelemetry loaded when none is set."""

from __future__ import annotations

import subprocess
import sys

import pytest

from executor.settings import Settings, SettingsError
from executor.tracing import NO_TRACING, tracing_for
from schemas.trace_context import TraceContext


def test_the_endpoint_follows_opentelemetrys_variables_unless_computebus_names_one() -> None:
    assert Settings.from_env({}).otlp_traces_endpoint == ""
    general = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"}
    assert Settings.from_env(general).otlp_traces_endpoint == "http://collector:4318/v1/traces"
    own = {**general, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:4318/in"}
    assert Settings.from_env(own).otlp_traces_endpoint == "http://traces:4318/in"
    ours = {**own, "COMPUTEBUS_OTLP_TRACES_ENDPOINT": "https://ours/v1/traces"}
    assert Settings.from_env(ours).otlp_traces_endpoint == "https://ours/v1/traces"
    for off in ({"OTEL_SDK_DISABLED": "true"}, {"OTEL_TRACES_EXPORTER": "none"}):
        assert Settings.from_env({**own, **off}).otlp_traces_endpoint == ""


def test_an_endpoint_that_cannot_be_used_is_refused_at_start_up() -> None:
    with pytest.raises(SettingsError, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        Settings.from_env(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
        )
    with pytest.raises(SettingsError, match="COMPUTEBUS_OTLP_TRACES_ENDPOINT"):
        Settings.from_env({"COMPUTEBUS_OTLP_TRACES_ENDPOINT": "collector:4318"})


def test_without_an_endpoint_spans_only_keep_ids_and_opentelemetry_stays_unloaded() -> None:
    tracing = tracing_for(Settings(), "api")
    assert tracing is NO_TRACING and not tracing.enabled
    span = tracing.start("x", TraceContext("4bf92f3577b34da6a3ce929d0e0e4736"))
    assert span.context.traceparent.startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    tracing.end(span)
    code = (
        "import sys, executor.cli, executor.api.server, executor.worker.start\n"
        "from executor.settings import Settings\n"
        "from executor.tracing import tracing_for\n"
        "tracing_for(Settings(), 'worker')\n"
        "print([m for m in sys.modules if m.startswith('opentelemetry')])\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert loaded.stdout.strip() == "[]", loaded.stdout
