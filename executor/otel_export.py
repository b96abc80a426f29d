"""Spans exported with the OpenTelemetry SDK over OTLP/HTTP (protobuf), in batches from the
SDK's own thread. Imported only when an endpoint is configured (``executor/tracing.py``); needs
the ``computebus[otel]`` extra.

Each span is handed to the SDK when it ends, under the ids computebus chose for it before it
ran (the handler's context already named it): a preset ``IdGenerator`` gives the SDK those ids.
The SDK reads its other ``OTEL_*`` variables itself (headers, timeout, batch delay, sampler,
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.trace.status import Status, StatusCode

from executor.tracing import Span, Tracing
from schemas.errors import ComputeError
from schemas.trace_context import TraceContext

_KINDS = {
    "internal": SpanKind.INTERNAL,
    "server": SpanKind.SERVER,
    "client": SpanKind.CLIENT,
    "producer": SpanKind.PRODUCER,
    "consumer": SpanKind.CONSUMER,
}


class _PresetIds(IdGenerator):
    """The ids of the span being handed over (set just before, under the lock)."""

    def __init__(self) -> None:
        self.span_id = 0
        self.trace_id = 0
        self._random = RandomIdGenerator()

    def generate_span_id(self) -> int:
        return self.span_id or self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        return self.trace_id or self._random.generate_trace_id()


class OtlpTracing(Tracing):
    """Spans sent to ``endpoint`` (an OTLP/HTTP traces URL, ``.../v1/traces``)."""

    enabled = True

    def __init__(self, endpoint: str, default_service_name: str) -> None:
        resource = Resource.create()
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: default_service_name}))
        self._ids = _PresetIds()
        self._lock = threading.Lock()
        self._provider = TracerProvider(resource=resource, id_generator=self._ids)
        self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        self._tracer = self._provider.get_tracer("computebus")

    def end(
        self,
        span: Span,
        *,
        error: ComputeError | None = None,
        end_ns: int | None = None,
        attributes: Mapping[str, str | int] | None = None,
    ) -> None:
        if attributes:
            span.attributes.update(attributes)
        if error is not None:
            span.attributes["computebus.error_code"] = error.code
        with self._lock:
            self._ids.span_id = int(span.span_id, 16)
            self._ids.trace_id = int(span.parent.trace_id, 16)
            try:
                made = self._tracer.start_span(
                    span.name,
                    context=_parent(span.parent),
                    kind=_KINDS[span.kind],
                    attributes=span.attributes,
                    start_time=span.start_ns,
                )
            finally:
                self._ids.span_id = self._ids.trace_id = 0
        if error is not None:
            made.set_status(Status(StatusCode.ERROR, f"{error.code}: {error.message}"[:256]))
        made.end(end_time=end_ns)

    def close(self) -> None:
        self._provider.shutdown()


def _parent(parent: TraceContext) -> Context:
    """The SDK's context for a span continuing ``parent``; an empty one for a trace's root
    (its trace id then comes from the preset ids)."""
    if parent.parent_id is None:
        return Context()
    remote = SpanContext(
        trace_id=int(parent.trace_id, 16),
        span_id=int(parent.parent_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if parent.sampled else TraceFlags.DEFAULT),
        trace_state=TraceState.from_header([parent.tracestate]) if parent.tracestate else None,
    )
    return trace.set_span_in_context(NonRecordingSpan(remote))
