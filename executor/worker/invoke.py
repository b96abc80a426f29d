"""One invocation, start to end: resolve the revision, validate the input, run the handler,
validate the output, and build the monitor record; ``store`` writes it once the caller has its
answer (the record is off the latency path). Transport-free: the worker feeds it.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import msgspec

from bus.monitor import MonitorStore, StoredRecord
from bus.registry_view import RegistryView
from executor.runtime.process import Logs, ProcessGone, ReplyTooLarge
from executor.settings import Settings
from executor.tracing import (
    SPAN_HANDLER,
    SPAN_INVOKE,
    SPAN_QUEUE_WAIT,
    SPAN_RECORD,
    Span,
    Tracing,
)
from executor.worker.metrics import WorkerMetrics
from executor.worker.reply_errors import reply_error
from executor.worker.revisions import PreparedRevision, PreparedRevisions
from schemas.codec import decode_json
from schemas.errors import (
    ComputeError,
    FunctionFailed,
    InvalidInput,
    InvalidOutput,
    InvalidRequest,
    OutOfMemory,
    PayloadTooLarge,
    Timeout,
)
from schemas.functions import FunctionRecord, Revision
from schemas.handler_protocol import (
    HandlerRequest,
    request_encoder,
)
from schemas.headers import Call
from schemas.invocations import HandlerContext, MonitorRecord
from schemas.trace_context import TraceContext, new_trace_id
from schemas.validation import CompiledSchema
from schemas.validation_guards import ValidationTooSlow


@dataclass
class Outcome:
    """The result bytes or the error, plus the record to keep (for ``ttl_ms``)."""

    result: bytes | None
    error: ComputeError | None
    record: MonitorRecord | None = None
    ttl_ms: int = 0
    trace: TraceContext | None = None  # what the record's span continues


@dataclass
class _Run:
    """What one run on a handler process gave, and when its handler started and ended."""

    result: bytes | None
    error: ComputeError | None
    logs: Logs
    started: float | None = None  # perf_counter when the process was had
    handler_s: float | None = None


class Invoker:
    """Runs one invocation at a time per call, on the revisions ``revisions`` prepares."""

    def __init__(
        self,
        view: RegistryView,
        revisions: PreparedRevisions,
        monitor: MonitorStore,
        settings: Settings,
        worker_id: str,
        metrics: WorkerMetrics,
        tracing: Tracing,
    ) -> None:
        self.metrics = metrics
        self.tracing = tracing
        self.view = view
        self.revisions = revisions
        self.monitor = monitor
        self.settings = settings
        self.worker_id = worker_id
        self.max_result_bytes = revisions.max_result_bytes
        self.running = 0  # invocations holding a handler process now (the worker's capacity)

    async def invoke(self, call: Call) -> Outcome:
        try:
            function, revision = await self.view.resolve(
                call.collection_topic, call.service, alias=call.alias, revision=call.revision
            )
        except ComputeError as exc:
            self.metrics.unresolved(call, exc)
            return Outcome(None, exc)
        trace = call.trace or TraceContext(new_trace_id())
        root: Span | None = None
        if trace.parent_id is None:  # the call starts the trace: a span of ours holds the rest
            root = self.tracing.start(SPAN_INVOKE, trace, kind="server", start_ns=call.queued_ns)
            trace = root.context
        started = time.time()
        t0 = time.perf_counter()
        logs = Logs("", False)
        result: bytes | None = None
        payload_is_json = False
        run: _Run | None = None
        try:
            prepared = await self.revisions.prepare(function, revision)
            event = decode_json(call.payload, "/payload")
            payload_is_json = True
            problems = await self._validate(
                prepared.input_schema, event, len(call.payload), prepared, "input"
            )
            if problems:
                raise InvalidInput("payload does not match the function's input schema", problems)
            run = await self._run(prepared, call, started, trace)
            result, logs = run.result, run.logs
            if run.error is not None:
                raise run.error
            assert result is not None
            if prepared.output_schema.accepts_anything and not _is_utf8(result):
                raise InvalidOutput("the handler's result is not UTF-8")
            if len(result) > self.max_result_bytes:
                raise PayloadTooLarge(
                    f"the handler's result is {len(result)} bytes, over the "
                    f"{self.max_result_bytes}-byte limit"
                )
            if not prepared.output_schema.accepts_anything:
                output = _handler_json(result)
                problems = await self._validate(
                    prepared.output_schema, output, len(result), prepared, "output"
                )
                if problems:
                    raise InvalidOutput(
                        "result does not match the function's output schema", problems
                    )
            error: ComputeError | None = None
        except ComputeError as exc:
            error, result = exc, None
        record = self._record(call, function, revision, started, t0, logs, result, error)
        if not payload_is_json:  # a record must stay JSON: keep no input that is not
            record.input = msgspec.UNSET
        record.trace_id = trace.trace_id
        if root is not None:
            self.tracing.end(root, error=error, attributes=_span_attributes(call, revision.number))
        self._count(call, revision.number, error, t0, run)
        return Outcome(result, error, record, function.monitor_config.ttl, trace)

    def _count(
        self, call: Call, revision: int, error: ComputeError | None, t0: float, run: _Run | None
    ) -> None:
        now = time.perf_counter()
        wait_s: float | None = None
        if run is not None and run.started is not None:
            wait_s = run.started - t0
            if call.queued_ns is not None:  # Async: the time in the queue too
                wait_s += max(0.0, time.time() - call.queued_ns / 1e9 - (now - t0))
        handler_s = run.handler_s if run is not None else None
        self.metrics.invoked(call, revision, error, now - t0, wait_s, handler_s)

    async def store(self, outcome: Outcome) -> StoredRecord | None:
        """Send the outcome's record to the monitor store (the ack comes later)."""
        if outcome.record is None:
            return None
        if not self.tracing.enabled or outcome.trace is None:
            return await self.monitor.write(outcome.record, outcome.ttl_ms)
        named = {"computebus.invocation_id": outcome.record.invocation_id}
        span = self.tracing.start(SPAN_RECORD, outcome.trace, attributes=named)
        stored = await self.monitor.write(outcome.record, outcome.ttl_ms)
        stored.ack.add_done_callback(lambda _: self.tracing.end(span))
        return stored

    async def _validate(
        self, schema: CompiledSchema, value: Any, size: int, prepared: PreparedRevision, what: str
    ) -> list[dict[str, Any]]:
        """Validate inline, or, when the schema can be slow (patterns, references, unique items)
        or the value is big, in a thread bounded by the function's timeout, so that the event
        loop keeps serving others."""
        if not schema.can_be_slow and size <= _INLINE_VALIDATION_BYTES:
            return schema.errors(value)
        timeout_s = prepared.revision.timeout / 1000
        late = f"validating the {what} did not finish within the function's timeout"
        try:
            async with asyncio.timeout(timeout_s):
                await prepared.validating.acquire()
        except TimeoutError:
            raise Timeout(f"{late}: its other validations took the time") from None
        try:
            return await asyncio.get_running_loop().run_in_executor(
                _VALIDATION_THREADS, _errors_within, schema, value, timeout_s
            )
        except ValidationTooSlow as exc:
            raise Timeout(f"{late} ({prepared.revision.timeout} ms): {exc}") from None
        finally:
            prepared.validating.release()

    async def _run(
        self, prepared: PreparedRevision, call: Call, started: float, trace: TraceContext
    ) -> _Run:
        rev = prepared.revision
        timeout_ms = min(rev.timeout, call.timeout_ms or rev.timeout)
        waited_from = call.queued_ns or time.time_ns()
        # Its id now, for the context; its start once it has a process (0 until then).
        handler = self.tracing.start(SPAN_HANDLER, trace, start_ns=0)
        context = HandlerContext(
            invocation_id=call.invocation_id,
            collection_topic=call.collection_topic,
            service=call.service,
            revision=rev.number,
            deadline_ms=int(started * 1000) + timeout_ms,
            memory_mb=rev.memory_mb,
            trace_id=trace.trace_id,
            traceparent=handler.context.traceparent,
            tracestate=trace.tracestate,
            trigger=call.trigger or msgspec.UNSET,
        )
        request = request_encoder.encode(
            HandlerRequest(event=msgspec.Raw(call.payload), context=context)
        )
        deadline = time.monotonic() + timeout_ms / 1000
        ran = await self._run_on_a_process(prepared, request, deadline, timeout_ms, handler)
        if self.tracing.enabled:
            self._end_run_spans(call, rev.number, waited_from, handler, ran.error)
        return ran

    def _end_run_spans(
        self,
        call: Call,
        revision: int,
        waited_from: int,
        handler: Span,
        error: ComputeError | None,
    ) -> None:
        """The wait for a process (for Async, from the publish) and the handler's run, if it
        got one."""
        attributes = _span_attributes(call, revision)
        got_process = handler.start_ns or time.time_ns()
        waiting = self.tracing.start(SPAN_QUEUE_WAIT, handler.parent, start_ns=waited_from)
        stuck = None if handler.start_ns else error
        self.tracing.end(waiting, end_ns=got_process, error=stuck, attributes=attributes)
        if handler.start_ns:
            self.tracing.end(handler, error=error, attributes=attributes)

    async def _run_on_a_process(
        self,
        prepared: PreparedRevision,
        request: bytes,
        deadline: float,
        timeout_ms: int,
        handler: Span,
    ) -> _Run:
        """One run on a warm (or new) process. A frame the handler wrote unasked (``ForgedReply``)
        kills the process and fails this invocation: it may have run already, so it is not run
        again."""
        rev = prepared.revision
        try:
            process = await prepared.pool.acquire(max(deadline - time.monotonic(), 0.001))
        except TimeoutError:
            busy = Timeout(f"no process of the function was free within its {timeout_ms} ms")
            return _Run(None, busy, Logs("", False))
        handler.start_ns = time.time_ns()
        self.running += 1
        began = time.perf_counter()
        run = _Run(None, None, Logs("", False), began)
        try:
            reply, run.logs = await process.invoke(request, max(deadline - time.monotonic(), 0.001))
        except TimeoutError:
            run.logs = process.take_logs()
            if process.out_of_memory:
                run.error = OutOfMemory(f"the handler ran out of memory ({rev.memory_mb} MB)")
            else:
                run.error = Timeout(f"the handler did not finish within {timeout_ms} ms")
            self._killed(rev, run.error)
            return run
        except ReplyTooLarge as exc:
            limit = f"over the {self.max_result_bytes}-byte limit"
            run.error, run.logs = PayloadTooLarge(f"{exc}, {limit}"), process.take_logs()
            return run
        except ProcessGone as exc:
            run.logs = process.take_logs()
            if process.out_of_memory or _NODE_HEAP_LIMIT in run.logs.text:
                limit = f"{rev.memory_mb} MB"
                run.error = OutOfMemory(f"the handler ran out of memory ({limit})")
            else:
                run.error = FunctionFailed(f"the handler process died: {exc}")
            self._killed(rev, run.error)
            return run
        finally:
            run.handler_s = time.perf_counter() - began
            self.running -= 1
            await prepared.pool.release(process)
        if not reply.ok:
            run.error = reply_error(reply, prepared)
            return run
        run.result = bytes(reply.result)
        return run

    def _killed(self, revision: Revision, error: ComputeError) -> None:
        reason = {"timeout": "timeout", "out_of_memory": "oom"}.get(error.code, "crash")
        self.metrics.killed.inc((revision.runtime, reason))

    def _record(
        self,
        call: Call,
        function: FunctionRecord,
        revision: Revision,
        started: float,
        t0: float,
        logs: Logs,
        result: bytes | None,
        error: ComputeError | None,
    ) -> MonitorRecord:
        record = MonitorRecord(
            invocation_id=call.invocation_id,
            collection_topic=call.collection_topic,
            service=call.service,
            revision=revision.number,
            status="running",
            invocation_type=call.invocation_type,
            started=int(started * 1000),
            duration_ms=round((time.perf_counter() - t0) * 1000, 3),
            logs=logs.text,
            logs_truncated=logs.truncated,
            worker=self.worker_id,
        )
        if call.caller is not None:
            record.caller = call.caller
        if function.monitor_config.store_payload:
            record.input = msgspec.Raw(call.payload)
            if result is not None:
                record.output = msgspec.Raw(result)
        return record.settled(error)


def _span_attributes(call: Call, revision: int) -> dict[str, str | int]:
    return {
        "computebus.invocation_id": call.invocation_id,
        "computebus.collection_topic": call.collection_topic,
        "computebus.service": call.service,
        "computebus.revision": revision,
        "computebus.invocation_type": call.invocation_type,
    }


def _handler_json(result: bytes) -> Any:
    """The handler's result as a value; what cannot be read is the handler's fault (502)."""
    try:
        return decode_json(result, "/result")
    except InvalidRequest as exc:
        raise InvalidOutput(f"the handler's result cannot be read: {exc.message}") from None


def _is_utf8(data: bytes) -> bool:
    """The reply frame's JSON was checked by the decoder; its strings' bytes were not."""
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


# Values up to this size are validated inline (a simple schema over them takes microseconds).
_INLINE_VALIDATION_BYTES = 64 * 1024
# Threads for validations that can be slow: their own, so that they never hold the ones bundle
# installs and process kills use.
_VALIDATION_THREADS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="computebus-validate")


def _errors_within(schema: CompiledSchema, value: Any, timeout_s: float) -> list[dict[str, Any]]:
    """Validate with a deadline that starts when the thread does."""
    return schema.errors(value, time.monotonic() + timeout_s)


# What Node prints when V8 reaches --max-old-space-size, just before it aborts.
_NODE_HEAP_LIMIT = "JavaScript heap out of memory"
