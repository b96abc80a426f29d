"""Async invocations on the worker side: run each message the dispatcher pulls (from its
function's own consumer), record it exactly once, retry what can pass, dead-letter the rest,
ack last.

One message, start to end (``_settle``):
1. Read the invocation's record. Already final: this is a redelivery after the record was
   written (the ack was lost), so ack and stop (dead-lettering a failure if that was missed).
   Execution is at least once; recording is exactly once, because every write below is a
   compare-and-set on the record's sequence.
2. Count the runs made so far from the record (a ``running`` record left behind is a run whose
   worker was lost), expire it if the caller's deadline passed, give up if no attempt is left.
3. Write ``running``, run it (``Invoker.invoke``), keeping the message alive with in-progress
   acks.
4. A failure that can pass, with attempts left: write ``queued`` (with that failure) and nak with
   exponential backoff. Otherwise the final record, the dead letter (for a failure), the
   result event, and only then the ack.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from dataclasses import dataclass, replace

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from bus import subjects
from bus.async_queue import AsyncQueue
from bus.caller_seal import CallerSeal
from bus.monitor import MonitorStore
from bus.registry_view import RegistryView
from bus.schedules import tick_invocation_id, tick_of
from bus.subject_triggers import (
    Origin,
    origin_of,
    trigger_context,
    trigger_headers,
    trigger_invocation_id,
)
from executor.settings import Settings
from executor.tasks import TaskSet
from executor.tracing import SPAN_RECORD, Tracing
from executor.worker.async_pull import AsyncDispatcher
from executor.worker.async_records import AsyncRecords, RecordChurn, in_flight_ttl
from executor.worker.invocation_log import InvocationLog
from executor.worker.invoke import Invoker, Outcome
from executor.worker.metrics import WorkerMetrics
from schemas.errors import RETRYABLE_CODES, ComputeError, Expired, WorkerLost
from schemas.functions import AsyncConfig
from schemas.headers import (
    H_INVOCATION_ID,
    H_MSG_ID,
    H_PAYLOAD_SHA256,
    H_RECORDED,
    call_from_headers,
    deadline_ms,
)
from schemas.ids import is_invocation_id
from schemas.invocations import async_record
from schemas.trace_context import trace_of

log = logging.getLogger("computebus.async")

_DEAD_LETTER_TRIES = 10  # deliveries of a finished failure spent trying to dead-letter it


def backoff_s(config: AsyncConfig, attempts_done: int) -> float:
    """The wait before the next run: ``backoff_ms`` doubled per failed run, at most the cap."""
    delay_ms: int = config.backoff_ms * 2 ** max(0, attempts_done - 1)
    return min(delay_ms, config.max_backoff_ms) / 1000


def async_invocation_id(headers: dict[str, str], stream_seq: int) -> str:
    """The id an Async message runs under: ``Compute-Invocation-Id``, else its ``Nats-Msg-Id``
    when that is a valid id, else ``async-<stream sequence>`` (stable across redeliveries)."""
    for name in (H_INVOCATION_ID, H_MSG_ID):
        given = headers.get(name)
        if given and is_invocation_id(given):
            return given
    return f"async-{stream_seq}"


@dataclass(frozen=True)
class _Delivery:
    """One delivery of an Async message, and what it names."""

    msg: Msg
    ct: str
    ft: str
    invocation_id: str
    headers: dict[str, str]
    schedule: str | None = None  # a schedule's tick: its name
    origin: Origin | None = None  # a subject trigger's message: where it came from


class _Ran(enum.Enum):
    FINISHED = "finished"  # recorded for good (by this delivery or another): ack
    HANDED_BACK = "handed back"  # nak'd with a backoff, for a retry
    HAS_RECORD = "has a record"  # assumed to have none, it had one: read it first


class AsyncConsumer:
    """Runs each Async message and settles it: one final record, retry or dead letter, then ack."""

    def __init__(
        self,
        nc: Client,
        queue: AsyncQueue,
        records: AsyncRecords,
        view: RegistryView,
        monitor: MonitorStore,
        invoker: Invoker,
        settings: Settings,
        worker_id: str,
        seal: CallerSeal,
        metrics: WorkerMetrics,
        tracing: Tracing,
    ) -> None:
        self.tracing = tracing
        self.seal = seal
        self.metrics = metrics
        self.records = records
        self.view = view
        self.monitor = monitor
        self.invoker = invoker
        self.worker_id = worker_id
        self.ack_wait_s = settings.async_ack_wait_s
        self._progress = TaskSet("in-progress ack")
        self.dispatcher = AsyncDispatcher(nc, queue, settings.async_concurrency, self._handle)
        self._invocations = InvocationLog(view, worker_id)

    async def start(self) -> None:
        await self.dispatcher.start()

    async def stop(self, deadline_s: float) -> None:
        """Stop pulling, let what runs finish within ``deadline_s``; hand back the rest."""
        await self.dispatcher.stop(deadline_s)

    async def _handle(self, msg: Msg) -> None:
        keep_alive = _KeepAlive(msg, max(0.05, self.ack_wait_s / 3), self._progress)
        self.metrics.async_running += 1
        try:
            await self._settle(msg)
        except asyncio.CancelledError:  # the drain deadline passed: another worker takes it
            with contextlib.suppress(Exception):
                await msg.nak()
            raise
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, RecordChurn) as exc:
            # The bus is failing over (a server died): another delivery settles it.
            log.warning("async invocation on %s handed back: %r", msg.subject, exc)
            with contextlib.suppress(Exception):
                await msg.nak(delay=1.0)
        except Exception:
            log.exception("async invocation on %s failed inside the worker", msg.subject)
            with contextlib.suppress(Exception):
                await msg.nak(delay=1.0)
        finally:
            self.metrics.async_running -= 1
            keep_alive.cancel()

    async def _settle(self, msg: Msg) -> None:
        where = subjects.parse_async_subject(msg.subject)
        if where is None:  # the stream only takes async subjects; nothing to run
            await msg.term()
            return
        ct, ft = where
        headers = msg.headers or {}
        meta = msg.metadata
        tick = tick_of(ct, ft, headers)
        origin = origin_of(headers)
        if tick is not None:
            invocation_id = tick_invocation_id(self.seal, ct, ft, *tick)
        elif origin is not None:
            invocation_id = trigger_invocation_id(self.seal, origin)
            headers = trigger_headers(headers, origin.alias)
        else:
            invocation_id = async_invocation_id(headers, meta.sequence.stream)
        schedule = tick[0] if tick is not None else None
        delivery = _Delivery(msg, ct, ft, invocation_id, headers, schedule, origin)
        if meta.num_delivered == 1 and H_RECORDED not in headers:
            # First sight of a message published straight to NATS: most likely no record
            # exists, and the ``running`` write (expecting none) checks that for free.
            ran = await self._run(delivery, done=0, seq=0, unrecorded=True)
            if ran is not _Ran.HAS_RECORD:
                await _ack_if_finished(msg, ran)
                return
        record, seq = await self.monitor.current(ct, ft, invocation_id)
        if record is not None and record.finished:
            if record.status == "failed":  # the worker may have died before dead-lettering it
                try:
                    await self.records.ensure_dead_letter(record, msg)
                except Exception:
                    if meta.num_delivered < record.attempts + _DEAD_LETTER_TRIES:
                        raise  # nak: the next delivery tries again
                    log.exception("giving up dead-lettering %s", invocation_id)
            await self.records.announce_again(record)
            await msg.ack()
            return
        # Runs made: a lost run always left a ``running`` record (written before it starts), so
        # no record means none, however often the message was delivered and handed back.
        done = record.attempts if record is not None else 0
        await _ack_if_finished(msg, await self._run(delivery, done=done, seq=seq))

    async def _run(
        self, delivery: _Delivery, done: int, seq: int, *, unrecorded: bool = False
    ) -> _Ran:
        """Run it once, after ``done`` runs; ``unrecorded``: no record was read (``seq`` 0)."""
        msg, ct, ft, headers = delivery.msg, delivery.ct, delivery.ft, delivery.headers
        now_ms = int(time.time() * 1000)
        base = async_record(delivery.invocation_id, ct, ft, 0, "running", now_ms)
        base.worker, base.attempts = self.worker_id, done
        if delivery.schedule is not None:
            base.schedule = delivery.schedule
        if delivery.origin is not None:
            base.trigger = delivery.origin.trigger_id
        base.caller = caller = self.seal.caller(headers, delivery.invocation_id)
        trace = trace_of(headers, delivery.invocation_id, stable=True)
        base.trace_id = trace.trace_id
        if digest := headers.get(H_PAYLOAD_SHA256):
            base.payload_sha256 = digest
        try:
            deadline = deadline_ms(headers)
            if deadline is not None:
                base.deadline = deadline
            call = call_from_headers(
                ct,
                ft,
                msg.data,
                headers,
                delivery.invocation_id,
                "Async",
                caller=caller,
                queued_ns=int(msg.metadata.timestamp.timestamp() * 1e9),
            )
            if delivery.origin is not None:
                call = replace(call, trigger=trigger_context(delivery.origin, msg.headers or {}))
            function, revision = await self.view.resolve(
                ct, ft, alias=call.alias, revision=call.revision
            )
        except ComputeError as exc:
            # A deleted function (None) has nothing to retry or redrive against.
            await self.records.finish(base, exc, await self.view.function(ct, ft), seq, msg)
            self._invocations.done(Outcome(None, exc), (ct, ft), delivery.invocation_id, done + 1)
            return _Ran.FINISHED
        base.revision = revision.number
        config = function.async_config
        refused: ComputeError | None = None
        if deadline is not None and now_ms > deadline:
            refused = Expired(f"still queued {now_ms - deadline} ms past its Compute-Deadline")
        elif done >= config.max_attempts:  # the last run was lost with its worker
            refused = WorkerLost(f"the worker running attempt {done} was lost before it recorded")
        if refused is not None:
            if isinstance(refused, Expired):
                self.metrics.expired_in_queue(ct, ft)
            await self.records.finish(base, refused, function, seq, msg)
            not_run = Outcome(None, refused, base)  # its revision and caller, no run
            self._invocations.done(not_run, (ct, ft), delivery.invocation_id, done + 1)
            return _Ran.FINISHED

        attempt = done + 1
        running = msgspec.structs.replace(base, attempts=attempt)
        if function.monitor_config.store_payload and H_RECORDED in headers:
            # The API checked it is JSON; from NATS it is only known once the invoker decodes
            # it, so its input waits for the final record.
            running.input = msgspec.Raw(call.payload)
        ttl_ms = function.monitor_config.ttl
        if unrecorded:
            written = await self.monitor.write_expecting(running, in_flight_ttl(ttl_ms), 0)
            if written is None:
                return _Ran.HAS_RECORD
        else:
            written = await self.records.write(running, ttl_ms, seq)
            if written is None:
                return _Ran.FINISHED
        seq = written[1]
        try:
            outcome = await self.invoker.invoke(call)
        except asyncio.CancelledError:
            # Stopped by this worker's drain deadline, not by the handler: the run does not
            # count against max_attempts (the next worker would otherwise see a lost run).
            undone = msgspec.structs.replace(running, status="queued", attempts=done)
            with contextlib.suppress(Exception):
                await self.monitor.write_expecting(undone, in_flight_ttl(ttl_ms), seq)
            raise
        self._invocations.done(outcome, (ct, ft), delivery.invocation_id, attempt)
        finished = msgspec.structs.replace(
            outcome.record or running,
            attempts=attempt,
            deadline=base.deadline,
            payload_sha256=base.payload_sha256,
            schedule=base.schedule,
            trigger=base.trigger,
        )
        error = outcome.error
        if error is not None and error.code in RETRYABLE_CODES and attempt < config.max_attempts:
            queued = msgspec.structs.replace(finished, status="queued")
            if await self.records.write(queued, ttl_ms, seq) is None:
                return _Ran.FINISHED
            delay_s = backoff_s(config, attempt)
            self.metrics.retried(ct, ft)
            await msg.nak(delay=delay_s)
            self.dispatcher.retry_later((ct, ft), delay_s)
            return _Ran.HANDED_BACK
        named = {"computebus.invocation_id": delivery.invocation_id}
        recording = self.tracing.start(SPAN_RECORD, outcome.trace or trace, attributes=named)
        await self.records.finish(finished, error, function, seq, msg)
        self.tracing.end(recording)
        return _Ran.FINISHED


class _KeepAlive:
    """Tells the server a message is still being worked on, every ``period`` (well within its
    ack wait): a timer, not a task, since most runs end before the first tick."""

    def __init__(self, msg: Msg, period: float, tasks: TaskSet) -> None:
        self._msg, self._period, self._tasks = msg, period, tasks
        self._timer = asyncio.get_running_loop().call_later(period, self._tick)

    def _tick(self) -> None:
        self._tasks.spawn(_in_progress(self._msg))
        self._timer = asyncio.get_running_loop().call_later(self._period, self._tick)

    def cancel(self) -> None:
        self._timer.cancel()


async def _in_progress(msg: Msg) -> None:
    with contextlib.suppress(Exception):
        await msg.in_progress()


async def _ack_if_finished(msg: Msg, ran: _Ran) -> None:
    if ran is _Ran.FINISHED:  # else it was handed back (nak) for a retry
        await msg.ack()
