"""Spans of an invocation: chosen on the hot path as ids and times only, exported with
OpenTelemetry only when the operator names an OTLP endpoint (``otlp_traces_endpoint`` in
settings; ``executor/otel_export.py`` then builds the exporter).

Every span's id is drawn here before it runs (the handler's context names its span before the
handler starts), and a span is handed to OpenTelemetry only when it ends, with the times it
kept; ``Tracing`` itself drops it, so without an endpoint OpenTelemetry is never imported.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from executor.settings import Settings, SettingsError, env_name
from schemas.errors import ComputeError
from schemas.trace_context import TraceContext, new_span_id

SpanKind = Literal["internal", "server", "client", "producer", "consumer"]
Attributes = dict[str, str | int]

# The spans computebus makes, by where they run.
SPAN_INVOKE = "computebus.invoke"  # API: one invoke request (server span)
SPAN_QUEUE_WAIT = "computebus.queue_wait"  # worker: waiting for a process (Async: from the publish)
SPAN_HANDLER = "computebus.handler"  # worker: the handler's run (its context names this span)
SPAN_RECORD = "computebus.record"  # worker: writing the final monitor record until it is stored


@dataclass(slots=True)
class Span:
    """One span: its name, the context it continues, its own id, and when it started."""

    name: str
    parent: TraceContext
    span_id: str
    kind: SpanKind
    start_ns: int
    attributes: Attributes

    @property
    def context(self) -> TraceContext:
        """The context this span hands on (to a worker, or to the handler)."""
        return self.parent.child(self.span_id)


class Tracing:
    """Spans that go nowhere: the default when no endpoint is set."""

    enabled = False

    def start(
        self,
        name: str,
        parent: TraceContext,
        *,
        kind: SpanKind = "internal",
        start_ns: int | None = None,
        attributes: Mapping[str, str | int] | None = None,
    ) -> Span:
        begun = time.time_ns() if start_ns is None else start_ns
        return Span(name, parent, new_span_id(), kind, begun, dict(attributes or {}))

    def end(
        self,
        span: Span,
        *,
        error: ComputeError | None = None,
        end_ns: int | None = None,
        attributes: Mapping[str, str | int] | None = None,
    ) -> None:
        """Export ``span`` (here: drop it), failed with ``error`` when given."""

    def close(self) -> None:
        """Send what is still buffered (blocking; call it from a thread)."""


NO_TRACING = Tracing()


def tracing_for(settings: Settings, role: str) -> Tracing:
    """``role``'s tracing: exporting to the configured endpoint, or none."""
    if not settings.otlp_traces_endpoint:
        return NO_TRACING
    try:
        from executor.otel_export import OtlpTracing
    except ImportError as exc:
        raise SettingsError(
            f"{env_name('otlp_traces_endpoint')} (or OTEL_EXPORTER_OTLP_ENDPOINT) is set, but "
            f"OpenTelemetry is not installed ({exc}); install computebus[otel]"
        ) from None
    return OtlpTracing(settings.otlp_traces_endpoint, f"computebus-{role}")
