"""Spans exported over OTLP/HTTP: ``computebus serve`` with OTEL_EXPORTER_OTLP_ENDPOINT pointing
at a small real OTLP receiver (http.server in a thread, decoding the protobuf body with
opentelemetry-proto, which the exporter installs), one sync and one Async invocation, and the
spans that arrive: their names, the caller's trace id, and the API span as the parent of the
worker's."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from tests.helpers import function_body, start_serve, token_of

PARENT_ID = "00f067aa0ba902b7"
CONTEXT_HANDLER = {"index.py": "def handler(event, context):\n    return dict(context)\n"}


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict[str, str | int]


class Receiver:
    """An OTLP/HTTP traces endpoint on loopback that keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.paths: set[str] = set()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.take(self.path, body)
                answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def take(self, path: str, body: bytes) -> None:
        request = trace_service_pb2.ExportTraceServiceRequest()
        request.ParseFromString(body)
        found = []
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes: dict[str, str | int] = {
                        a.key: a.value.string_value or a.value.int_value for a in span.attributes
                    }
                    found.append(
                        ReceivedSpan(
                            service=resource.get("service.name", ""),
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            kind=span.kind,
                            attributes=attributes,
                        )
                    )
        with self._lock:
            self.paths.add(path)
            self.spans.extend(found)

    def of_trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [span for span in self.spans if span.trace_id == trace_id]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    thread = threading.Thread(target=found.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        found.server.shutdown()
        found.server.server_close()


async def wait_for_spans(
    receiver: Receiver, trace_id: str, names: set[str], timeout: float = 20.0
) -> list[ReceivedSpan]:
    deadline = time.monotonic() + timeout
    while True:
        spans = receiver.of_trace(trace_id)
        if names <= {span.name for span in spans}:
            return spans
        assert time.monotonic() < deadline, f"spans of {trace_id}: {spans}"
        await asyncio.sleep(0.05)


async def wait_for_status(http: httpx.AsyncClient, path: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        response = await http.get(path)
        if response.status_code == 200 and response.json()["body"]["status"] == "succeeded":
            record: dict[str, Any] = response.json()["body"]
            return record
        assert time.monotonic() < deadline, response.text
        await asyncio.sleep(0.05)


def one(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    named = [span for span in spans if span.name == name]
    assert len(named) == 1, spans
    return named[0]


async def test_spans_are_exported_with_the_callers_trace_and_linked(
    receiver: Receiver, tmp_path: Path
) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "50",  # milliseconds between batches, not 5 s
    }
    proc, fields = await start_serve("--data-dir", str(tmp_path / "data"), env=env)
    try:
        async with httpx.AsyncClient(
            base_url=fields["api"], timeout=30, headers=token_of(fields)
        ) as http:
            body = function_body(CONTEXT_HANDLER, runtime="python", collection="traced")
            created = await http.post("/compute/functions", json=body)
            assert created.status_code == 201, created.text
            path = f"/compute/functions/traced/{created.json()['body']['compute_asset']['service']}"

            sync_trace = os.urandom(16).hex()
            response = await http.post(
                f"{path}/invoke",
                json={"payload": {}},
                headers={"traceparent": f"00-{sync_trace}-{PARENT_ID}-01"},
            )
            assert response.status_code == 200, response.text
            handler_traceparent = response.json()["body"]["traceparent"]
            async_trace = os.urandom(16).hex()
            queued = await http.post(
                f"{path}/invoke",
                json={"payload": {}, "invocation_type": "Async"},
                headers={"traceparent": f"00-{async_trace}-{PARENT_ID}-01"},
            )
            assert queued.status_code == 202, queued.text
            invocation_id = queued.json()["body"]["invocation_id"]
            finished = await wait_for_status(http, f"{path}/invocations/{invocation_id}")
            assert finished["trace_id"] == async_trace

        # Straight over NATS without a traceparent: the worker starts the trace, with a span of
        # its own over the rest.
        nc = await nats.connect(fields["nats"])
        try:
            subject = f"ms.compute.traced.function.{path.rsplit('/', 1)[1]}"
            reply = await nc.request(subject, b"{}", timeout=10)
        finally:
            await nc.close()
        nats_trace = json.loads(reply.data)["trace_id"]

        names = {"computebus.invoke", "computebus.queue_wait", "computebus.handler"}
        names.add("computebus.record")
        for trace_id in (sync_trace, async_trace):
            spans = await wait_for_spans(receiver, trace_id, names)
            api = one(spans, "computebus.invoke")
            assert api.service == "computebus-api" and api.parent_id == PARENT_ID
            assert api.kind == 2  # SPAN_KIND_SERVER
            assert api.attributes["http.response.status_code"] in (200, 202)
            for name in names - {"computebus.invoke"}:
                span = one(spans, name)
                assert span.service == "computebus-worker", span
                assert span.parent_id == api.span_id, span  # the worker continues the API span
            handler = one(spans, "computebus.handler")
            assert handler.attributes["computebus.collection_topic"] == "traced"
            if trace_id == sync_trace:  # the handler's context names its own span
                assert handler_traceparent == f"00-{sync_trace}-{handler.span_id}-01"
        spans = await wait_for_spans(receiver, nats_trace, names)
        root = one(spans, "computebus.invoke")
        assert root.service == "computebus-worker" and root.parent_id == ""
        assert all(span.parent_id == root.span_id for span in spans if span is not root)
        assert receiver.paths == {"/v1/traces"}
    finally:
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 30)
