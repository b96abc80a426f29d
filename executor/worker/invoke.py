"""One invocation, start to end: resolve the revision, validate the input, run the handler,
validate the output, and build the monitor record; ``store`` writes it once the caller has its
answer (the record is off the latency path). Transport-free: the worker feeds it.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import msgspec

from bus.bundles import BundleStore
from bus.monitor import MonitorStore, StoredRecord
from bus.registry_view import RegistryView
from executor.bundle.handlers import handler_file
from executor.call_headers import Call
from executor.runtime.launch import launch, launch_plan
from executor.runtime.pool import InstancePool, RevisionKey, RevisionPool
from executor.runtime.process import HandlerProcess, Logs, ProcessGone, ReplyTooLarge
from executor.runtime.sandbox import Limits, Sandbox
from executor.runtime.workspace_cache import WorkspaceCache
from executor.settings import Settings
from schemas.codec import decode_json
from schemas.errors import (
    ComputeError,
    FunctionFailed,
    FunctionNotFound,
    HandlerNotFound,
    InvalidInput,
    InvalidOutput,
    InvalidRequest,
    OutOfMemory,
    PayloadTooLarge,
    Timeout,
)
from schemas.functions import FunctionRecord, Revision
from schemas.handler_protocol import (
    PROBE_REQUEST,
    HandlerReply,
    HandlerRequest,
    request_encoder,
)
from schemas.invocations import HandlerContext, MonitorRecord
from schemas.validation import CompiledSchema, ValidationTooSlow


@dataclass
class Outcome:
    """The result bytes or the error, plus the record to keep (for ``ttl_ms``)."""

    result: bytes | None
    error: ComputeError | None
    record: MonitorRecord | None = None
    ttl_ms: int = 0


@dataclass(frozen=True)
class PreparedRevision:
    key: RevisionKey
    revision: Revision
    handler_file: str
    input_schema: CompiledSchema
    output_schema: CompiledSchema
    pool: RevisionPool
    # One slow validation of this revision at a time, so one function cannot hold every thread.
    validating: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))


class Invoker:
    def __init__(
        self,
        *,
        view: RegistryView,
        bundles: BundleStore,
        workspaces: WorkspaceCache,
        instances: InstancePool,
        monitor: MonitorStore,
        settings: Settings,
        max_result_bytes: int,
        sandbox: Sandbox,
        worker_id: str,
    ) -> None:
        self.sandbox = sandbox
        self.worker_id = worker_id
        self.max_result_bytes = max_result_bytes
        self.view = view
        self.bundles = bundles
        self.workspaces = workspaces
        self.instances = instances
        self.monitor = monitor
        self.settings = settings
        self._prepared: dict[RevisionKey, PreparedRevision] = {}
        self.running = 0  # invocations holding a handler process now (the worker's capacity)
        self._preparing: dict[RevisionKey, asyncio.Lock] = {}

    async def invoke(self, call: Call) -> Outcome:
        try:
            function, revision = await self.view.resolve(
                call.collection_topic, call.service, alias=call.alias, revision=call.revision
            )
        except ComputeError as exc:
            return Outcome(None, exc)
        started = time.time()
        t0 = time.perf_counter()
        logs = Logs("", False)
        result: bytes | None = None
        payload_is_json = False
        try:
            prepared = await self.prepare(function, revision)
            event = decode_json(call.payload, "/payload")
            payload_is_json = True
            problems = await self._validate(
                prepared.input_schema, event, len(call.payload), prepared, "input"
            )
            if problems:
                raise InvalidInput("payload does not match the function's input schema", problems)
            result, failure, logs = await self._run(prepared, call, started)
            if failure is not None:
                raise failure
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
        return Outcome(result, error, record, function.monitor_config.ttl)

    async def store(self, outcome: Outcome) -> StoredRecord | None:
        """Send the outcome's record to the monitor store (the ack comes later)."""
        if outcome.record is None:
            return None
        return await self.monitor.write(outcome.record, outcome.ttl_ms)

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
        self, prepared: PreparedRevision, call: Call, started: float
    ) -> tuple[bytes | None, ComputeError | None, Logs]:
        rev = prepared.revision
        timeout_ms = min(rev.timeout, call.timeout_ms or rev.timeout)
        context = HandlerContext(
            invocation_id=call.invocation_id,
            collection_topic=call.collection_topic,
            service=call.service,
            revision=rev.number,
            deadline_ms=int(started * 1000) + timeout_ms,
            memory_mb=rev.memory_mb,
        )
        request = request_encoder.encode(
            HandlerRequest(event=msgspec.Raw(call.payload), context=context)
        )
        deadline = time.monotonic() + timeout_ms / 1000
        return await self._run_on_a_process(prepared, request, deadline, timeout_ms)

    async def _run_on_a_process(
        self, prepared: PreparedRevision, request: bytes, deadline: float, timeout_ms: int
    ) -> tuple[bytes | None, ComputeError | None, Logs]:
        """One run on a warm (or new) process. A frame the handler wrote unasked (``ForgedReply``)
        kills the process and fails this invocation: it may have run already, so it is not run
        again."""
        rev = prepared.revision
        try:
            process = await prepared.pool.acquire(max(deadline - time.monotonic(), 0.001))
        except TimeoutError:
            busy = Timeout(f"no process of the function was free within its {timeout_ms} ms")
            return None, busy, Logs("", False)
        self.running += 1
        try:
            reply, logs = await process.invoke(request, max(deadline - time.monotonic(), 0.001))
        except TimeoutError:
            logs = process.take_logs()
            if process.out_of_memory:
                return (
                    None,
                    OutOfMemory(f"the handler ran out of memory ({rev.memory_mb} MB)"),
                    logs,
                )
            error = Timeout(f"the handler did not finish within {timeout_ms} ms")
            return None, error, logs
        except ReplyTooLarge as exc:
            limit = f"over the {self.max_result_bytes}-byte limit"
            return None, PayloadTooLarge(f"{exc}, {limit}"), process.take_logs()
        except ProcessGone as exc:
            logs = process.take_logs()
            if process.out_of_memory or _NODE_HEAP_LIMIT in logs.text:
                limit = f"{rev.memory_mb} MB"
                return None, OutOfMemory(f"the handler ran out of memory ({limit})"), logs
            return None, FunctionFailed(f"the handler process died: {exc}"), logs
        finally:
            self.running -= 1
            await prepared.pool.release(process)
        if not reply.ok:
            return None, _reply_error(reply, prepared), logs
        return bytes(reply.result), None, logs

    async def prepare(self, function: FunctionRecord, revision: Revision) -> PreparedRevision:
        """Everything per revision that can be done once: workspace, validators, pool."""
        key = (function.collection_topic, function.service, revision.number)
        prepared = self._prepared.get(key)
        if prepared is not None:
            return prepared
        lock = self._preparing.setdefault(key, asyncio.Lock())
        async with lock:
            prepared = self._prepared.get(key)
            if prepared is None:
                prepared = await self._build(key, revision)
                self._prepared[key] = prepared
        self._preparing.pop(key, None)
        return prepared

    async def _build(self, key: RevisionKey, revision: Revision) -> PreparedRevision:
        workspace = self.workspaces.path_for(revision.bundle)
        if workspace is None:
            bundle = await self.bundles.get(revision.bundle)
            workspace = await asyncio.to_thread(self.workspaces.install, revision.bundle, bundle)
        file, export = handler_file(revision.handler, revision.runtime)
        plan = launch_plan(
            self.sandbox,
            runtime=revision.runtime,
            handler_file=file,
            export=export,
            workspace=workspace,
            env_vars=revision.env_vars,
            limits=Limits(revision.memory_mb, revision.read_only_fs, revision.network),
        )
        sandbox, log_cap = self.sandbox, self.settings.log_cap_bytes
        max_reply_bytes = self.max_result_bytes + 1024  # the reply frame's envelope

        async def spawn() -> HandlerProcess:
            return await launch(sandbox, plan, log_cap=log_cap, max_reply_bytes=max_reply_bytes)

        return PreparedRevision(
            key=key,
            revision=revision,
            handler_file=file,
            input_schema=CompiledSchema(revision.schema.input),
            output_schema=CompiledSchema(revision.schema.output),
            pool=self.instances.for_revision(key, spawn),
        )

    async def probe(self, ct: str, ft: str, number: int) -> list[dict[str, str]]:
        """Load the revision's handler in a sandboxed process without calling it; the reasons it
        could not be published (empty when it loads and has its export)."""
        try:
            function, revision = await self.view.resolve(ct, ft, revision=number)
            prepared = await self.prepare(function, revision)
        except ComputeError as exc:
            return [{"reason": exc.code, "message": exc.message}]
        except RuntimeError as exc:  # the runtime is not installed here
            return [{"reason": "runtime_unavailable", "message": str(exc)}]
        try:
            process = await prepared.pool.acquire(revision.timeout / 1000)
        except TimeoutError:
            return [{"reason": "timeout", "message": "no process was free for the load check"}]
        try:
            reply, _ = await process.invoke(PROBE_REQUEST, revision.timeout / 1000)
        except TimeoutError:
            return [
                {"reason": "timeout", "message": "loading the handler took longer than its timeout"}
            ]
        except ProcessGone as exc:
            return [{"reason": "function_error", "message": f"the handler process died: {exc}"}]
        finally:
            await prepared.pool.release(process)
        if reply.ok:
            return []
        error = _reply_error(reply, prepared)
        return [{"reason": error.code, "message": error.message}]

    async def retire_revision(self, ct: str, ft: str, number: int) -> None:
        """A revision was removed (a refused update): forget what was prepared for it."""
        key = (ct, ft, number)
        self._prepared.pop(key, None)
        await self.instances.retire(key)

    async def retire_unaliased(self, ct: str, ft: str, aliased: set[int]) -> None:
        """Stop the warm processes of this function's revisions that no alias points to."""
        for key in [k for k in self._prepared if k[:2] == (ct, ft) and k[2] not in aliased]:
            self._prepared.pop(key, None)
            await self.instances.retire(key)

    async def forget_function(self, ct: str, ft: str) -> None:
        """Drop what was prepared for a deleted function and stop its processes; invocations
        still waiting for one answer ``function_not_found``."""
        gone = FunctionNotFound(f"function {ct}/{ft} was deleted")
        for key in [k for k in self._prepared if k[:2] == (ct, ft)]:
            self._prepared.pop(key, None)
            await self.instances.retire(key, gone)

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
            status="failed" if error else "succeeded",
            invocation_type=call.invocation_type,
            started=int(started * 1000),
            duration_ms=round((time.perf_counter() - t0) * 1000, 3),
            logs=logs.text,
            logs_truncated=logs.truncated,
            worker=self.worker_id,
        )
        if error is not None:
            record.error_code = error.code
            record.error_message = error.message
            record.error_details = error.details
        if function.monitor_config.store_payload:
            record.input = msgspec.Raw(call.payload)
            if result is not None:
                record.output = msgspec.Raw(result)
        return record


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


def _reply_error(reply: HandlerReply, prepared: PreparedRevision) -> ComputeError:
    failure = reply.error
    if failure is None:
        return FunctionFailed("the handler process sent an error without a reason")
    if failure.code == "handler_not_found":
        export = prepared.revision.handler.rsplit(".", 1)[-1]
        return HandlerNotFound(
            f"{prepared.handler_file} has no export {export!r}",
            [{"file": prepared.handler_file, "export": export}],
        )
    if failure.code == "function_error":
        return FunctionFailed(
            f"the handler raised {failure.type}: {failure.message}",
            [{"type": failure.type, "message": failure.message}],
        )
    if failure.code == "out_of_memory":
        return OutOfMemory(failure.message)
    if failure.code == "invalid_output":
        return InvalidOutput(failure.message, [{"type": failure.type, "message": failure.message}])
    # Any other code would be a platform's (429 overloaded, 504 timeout...): never the handler's.
    return FunctionFailed(
        f"the handler process answered with an error code it may not use: {failure.code!r}",
        [{"type": failure.type, "message": failure.message}],
    )
