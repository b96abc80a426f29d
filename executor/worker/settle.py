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
import logging
import time
from dataclasses import dataclass

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from bus import subjects
from bus.async_queue import AsyncQueue
from bus.dead_letters import DeadLetters
from bus.monitor import MonitorStore
from executor.settings import Settings
from executor.worker.async_pull import AsyncDispatcher
from executor.worker.invoke import Invoker
from schemas.codec import is_json
from schemas.errors import RETRYABLE_CODES, ComputeError, Expired, FunctionNotFound, WorkerLost
from schemas.functions import AsyncConfig, FunctionRecord
from schemas.headers import (
    CALL_OPTIONS,
    H_INVOCATION_ID,
    H_MSG_ID,
    H_PAYLOAD_SHA256,
    H_RECORDED,
    call_from_headers,
    deadline_ms,
)
from schemas.ids import is_invocation_id
from schemas.invocations import DeadLetter, MonitorRecord

log = logging.getLogger("computebus.async")

# Records of invocations whose function is gone are kept this long (there is no monitor_config).
_ORPHAN_TTL_MS = 24 * 3600 * 1000
_IN_FLIGHT_TTL_MS = 24 * 3600 * 1000
_CAS_TRIES = 8
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


class _Settled(Exception):
    """Someone else wrote this invocation's final record: ack and stop."""


class _Recorded(Exception):
    """The invocation has a record after all (it was assumed to have none): read it first."""


def _in_flight(ttl_ms: int) -> int:
    return max(ttl_ms, _IN_FLIGHT_TTL_MS)


class AsyncConsumer:
    """Runs each Async message and settles it: one final record, retry or dead letter, then ack."""

    def __init__(
        self,
        nc: Client,
        queue: AsyncQueue,
        dead_letters: DeadLetters,
        invoker: Invoker,
        settings: Settings,
    ) -> None:
        self.nc = nc
        self.queue = queue
        self.dead_letters = dead_letters
        self.invoker = invoker
        self.monitor: MonitorStore = invoker.monitor
        self.settings = settings
        self.dispatcher = AsyncDispatcher(nc, queue, settings.async_concurrency, self._handle)

    async def start(self) -> None:
        await self.dispatcher.start()

    async def stop(self, deadline_s: float) -> None:
        """Stop pulling, let what runs finish within ``deadline_s``; hand back the rest."""
        await self.dispatcher.stop(deadline_s)

    async def _handle(self, msg: Msg) -> None:
        keep_alive = asyncio.create_task(self._keep_alive(msg))
        try:
            await self._settle(msg)
        except asyncio.CancelledError:  # the drain deadline passed: another worker takes it
            with contextlib.suppress(Exception):
                await msg.nak()
            raise
        except Exception:
            log.exception("async invocation on %s failed inside the worker", msg.subject)
            with contextlib.suppress(Exception):
                await msg.nak(delay=1.0)
        finally:
            keep_alive.cancel()

    async def _keep_alive(self, msg: Msg) -> None:
        """Tell the server the message is still being worked on, well within its ack wait."""
        period = max(0.05, self.settings.async_ack_wait_s / 3)
        while True:
            await asyncio.sleep(period)
            with contextlib.suppress(Exception):
                await msg.in_progress()

    async def _settle(self, msg: Msg) -> None:
        where = subjects.parse_async_subject(msg.subject)
        if where is None:  # the stream only takes async subjects; nothing to run
            await msg.term()
            return
        ct, ft = where
        headers = msg.headers or {}
        meta = msg.metadata
        invocation_id = async_invocation_id(headers, meta.sequence.stream)
        delivery = _Delivery(msg, ct, ft, invocation_id, headers)
        if meta.num_delivered == 1 and H_RECORDED not in headers:
            # First sight of a message published straight to NATS: most likely no record
            # exists, and the ``running`` write (expecting none) checks that for free.
            try:
                await self._run_and_ack(delivery, done=0, seq=0, unrecorded=True)
                return
            except _Recorded:
                pass  # there was one after all: read it
        record, seq = await self.monitor.current(ct, ft, invocation_id)
        if record is not None and record.finished:
            if record.status == "failed":  # the worker may have died before dead-lettering it
                try:
                    await self._ensure_dead_letter(record, msg)
                except Exception:
                    if meta.num_delivered < record.attempts + _DEAD_LETTER_TRIES:
                        raise  # nak: the next delivery tries again
                    log.exception("giving up dead-lettering %s", invocation_id)
            await msg.ack()
            return
        # Runs made: a lost run always left a ``running`` record (written before it starts), so
        # no record means none, however often the message was delivered and handed back.
        done = record.attempts if record is not None else 0
        await self._run_and_ack(delivery, done=done, seq=seq)

    async def _run_and_ack(
        self, delivery: _Delivery, *, done: int, seq: int, unrecorded: bool = False
    ) -> None:
        try:
            finished = await self._run(delivery, done, seq, unrecorded=unrecorded)
        except _Settled:
            finished = True
        if finished:  # else it was handed back (nak) for a retry
            await delivery.msg.ack()

    async def _run(
        self, delivery: _Delivery, done: int, seq: int, *, unrecorded: bool = False
    ) -> bool:
        """Run it once; True when it is finished (ack), False when it was handed back (nak).

        ``unrecorded``: no record was read; writing ``running`` raises ``_Recorded`` if one
        exists after all."""
        msg, ct, ft, headers = delivery.msg, delivery.ct, delivery.ft, delivery.headers
        invocation_id = delivery.invocation_id
        now_ms = int(time.time() * 1000)
        base = MonitorRecord(
            invocation_id=invocation_id,
            collection_topic=ct,
            service=ft,
            revision=0,
            status="running",
            started=now_ms,
            invocation_type="Async",
            worker=self.invoker.worker_id,
            attempts=done,
        )
        if digest := headers.get(H_PAYLOAD_SHA256):
            base.payload_sha256 = digest
        try:
            deadline = deadline_ms(headers)
            if deadline is not None:
                base.deadline = deadline
            call = call_from_headers(ct, ft, msg.data, headers, invocation_id, "Async")
            function, revision = await self.invoker.view.resolve(
                ct, ft, alias=call.alias, revision=call.revision
            )
        except ComputeError as exc:
            # A deleted function (None) has nothing to retry or redrive against.
            await self._finish(base, exc, await self.invoker.view.function(ct, ft), seq, msg)
            return True
        base.revision = revision.number
        if deadline is not None and now_ms > deadline:
            error: ComputeError | None = Expired(
                f"still queued {now_ms - deadline} ms past its Compute-Deadline"
            )
            await self._finish(base, error, function, seq, msg)
            return True
        config = function.async_config
        if done >= config.max_attempts:  # the last run was lost with its worker
            error = WorkerLost(f"the worker running attempt {done} was lost before it recorded")
            await self._finish(base, error, function, seq, msg)
            return True

        attempt = done + 1
        running = msgspec.structs.replace(base, attempts=attempt)
        if function.monitor_config.store_payload and H_RECORDED in headers:
            # The API checked it is JSON; from NATS it is only known once the invoker decodes
            # it, so its input waits for the final record.
            running.input = msgspec.Raw(call.payload)
        ttl_ms = function.monitor_config.ttl
        if unrecorded:
            written = await self.monitor.write_expecting(running, _in_flight(ttl_ms), 0)
            if written is None:
                raise _Recorded
            seq = written[1]
        else:
            _, seq = await self._write(running, ttl_ms, seq)
        try:
            outcome = await self.invoker.invoke(call)
        except asyncio.CancelledError:
            # Stopped by this worker's drain deadline, not by the handler: the run does not
            # count against max_attempts (the next worker would otherwise see a lost run).
            undone = msgspec.structs.replace(running, status="queued", attempts=done)
            with contextlib.suppress(Exception):
                await self.monitor.write_expecting(undone, _in_flight(ttl_ms), seq)
            raise
        finished = outcome.record or running
        finished = msgspec.structs.replace(
            finished,
            attempts=attempt,
            deadline=base.deadline,
            payload_sha256=base.payload_sha256,
        )
        error = outcome.error
        if error is not None and error.code in RETRYABLE_CODES and attempt < config.max_attempts:
            await self._write(msgspec.structs.replace(finished, status="queued"), ttl_ms, seq)
            delay_s = backoff_s(config, attempt)
            await msg.nak(delay=delay_s)
            self.dispatcher.retry_later((ct, ft), delay_s)
            return False
        await self._finish(finished, error, function, seq, msg)
        return True

    async def _finish(
        self,
        record: MonitorRecord,
        error: ComputeError | None,
        function: FunctionRecord | None,
        seq: int,
        msg: Msg,
    ) -> None:
        """The final record, then (for a failure) the dead letter, then the result event.

        In that order so that only the delivery that wrote the record dead-letters it; a worker
        lost in between leaves a failed record whose redelivery adds the dead letter."""
        if error is not None:
            record = msgspec.structs.replace(
                record,
                status="failed",
                error_code=error.code,
                error_message=error.message,
                error_details=error.details or msgspec.UNSET,
            )
        else:
            record = msgspec.structs.replace(record, status="succeeded")
        ttl_ms = function.monitor_config.ttl if function is not None else _ORPHAN_TTL_MS
        data, _ = await self._write(record, ttl_ms, seq, final=True)
        not_dead_lettered: Exception | None = None
        if error is not None and function is not None:
            try:
                await self.dead_letters.add(_dead_letter(record, msg))
            except Exception as exc:  # announced all the same; the redelivery dead-letters it
                not_dead_lettered = exc
        await self.nc.publish(
            subjects.result_subject(record.collection_topic, record.service, record.status), data
        )
        if not_dead_lettered is not None:
            raise not_dead_lettered

    async def _ensure_dead_letter(self, record: MonitorRecord, msg: Msg) -> None:
        ct, ft, invocation_id = record.collection_topic, record.service, record.invocation_id
        if (
            record.error_code == FunctionNotFound.code
            or await self.invoker.view.function(ct, ft) is None
        ):
            return  # failures of deleted functions are not dead-lettered
        if await self.dead_letters.get(ct, ft, invocation_id) is None:
            await self.dead_letters.add(_dead_letter(record, msg))

    async def _write(
        self, record: MonitorRecord, ttl_ms: int, seq: int, *, final: bool = False
    ) -> tuple[bytes, int]:
        """Write ``record`` over the one at ``seq``; raise ``_Settled`` if the invocation was
        finished meanwhile (by another delivery of the same message).

        A record of an invocation still under way lives at least ``_IN_FLIGHT_TTL_MS``: the
        attempts are counted on it, so it must outlast the backoffs between them."""
        if not final:
            ttl_ms = _in_flight(ttl_ms)
        for _ in range(_CAS_TRIES):
            written = await self.monitor.write_expecting(record, ttl_ms, seq)
            if written is not None:
                return written
            current, seq = await self.monitor.current(
                record.collection_topic, record.service, record.invocation_id
            )
            if current is not None and current.finished:
                raise _Settled
        raise RuntimeError(f"the record of {record.invocation_id} kept changing under us")


def _dead_letter(record: MonitorRecord, msg: Msg) -> DeadLetter:
    headers = msg.headers or {}
    payload = msg.data or b"null"
    kept = is_json(payload)
    return DeadLetter(
        invocation_id=record.invocation_id,
        collection_topic=record.collection_topic,
        service=record.service,
        attempts=record.attempts,
        error_code=record.error_code if isinstance(record.error_code, str) else "internal_error",
        error_message=record.error_message if isinstance(record.error_message, str) else "",
        failed_at=int(time.time() * 1000),
        headers={k: v for k in CALL_OPTIONS if (v := headers.get(k))},
        payload=msgspec.Raw(payload) if kept else msgspec.UNSET,
        payload_omitted=not kept,
    )
