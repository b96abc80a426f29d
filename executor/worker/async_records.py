"""The writes that settle an Async invocation: its record, always a compare-and-set on the
sequence last read, then for a failure its dead letter, then its result event.

A write that finds the invocation finished meanwhile (another delivery of the same message got
there first) reports it with None, and the caller acks without writing again: that is what
makes recording exactly once while running is at least once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import msgspec
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from bus import subjects
from bus.dead_letters import DeadLetters
from bus.monitor import MonitorStore
from bus.registry_view import RegistryView
from bus.result_events import ResultEvents
from bus.subject_triggers import origin_of, trigger_headers
from schemas.codec import encode, is_json
from schemas.errors import ComputebusError, ComputeError, FunctionNotFound, InternalError
from schemas.functions import FunctionRecord
from schemas.headers import CALL_OPTIONS
from schemas.invocations import DeadLetter, MonitorRecord

log = logging.getLogger("computebus.async")

# Records of invocations whose function is gone are kept this long (there is no monitor_config).
_ORPHAN_TTL_MS = 24 * 3600 * 1000
# A record of an invocation still under way lives at least this long: its attempts are counted
# on it, so it must outlast the backoffs between them.
_IN_FLIGHT_TTL_MS = 24 * 3600 * 1000
_CAS_TRIES = 8


class RecordChurn(ComputebusError):
    """An invocation's record kept changing under every compare-and-set tried."""


def in_flight_ttl(ttl_ms: int) -> int:
    return max(ttl_ms, _IN_FLIGHT_TTL_MS)


class AsyncRecords:
    """Writes an Async invocation's records, dead letter and result event, in that order."""

    def __init__(
        self,
        nc: Client,
        monitor: MonitorStore,
        dead_letters: DeadLetters,
        view: RegistryView,
        events: ResultEvents,
        dead_lettered: Callable[[str, str], None],
    ) -> None:
        self.dead_lettered = dead_lettered  # (collection, function), once a letter is stored
        self.nc = nc
        self.events = events
        self.monitor = monitor
        self.dead_letters = dead_letters
        self.view = view

    async def write(
        self,
        record: MonitorRecord,
        ttl_ms: int,
        seq: int,
        *,
        final: bool = False,
        make: bool = True,
    ) -> tuple[bytes, int] | None:
        """Write ``record`` over the one at ``seq`` (re-reading it if it moved); None if the
        invocation was finished meanwhile."""
        if not final:
            ttl_ms = in_flight_ttl(ttl_ms)
        for _ in range(_CAS_TRIES):
            written = await self.monitor.write_expecting(record, ttl_ms, seq, make=make)
            if written is not None:
                return written
            current, seq = await self.monitor.current(
                record.collection_topic, record.service, record.invocation_id
            )
            if current is not None and current.finished:
                return None
        raise RecordChurn(f"the record of {record.invocation_id} kept changing under us")

    async def finish(
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
        record = record.settled(error)
        ttl_ms = function.monitor_config.ttl if function is not None else _ORPHAN_TTL_MS
        try:
            # No function: its collection keeps its stream if it had one; one that never had a
            # function (a message published for an invented name) is not given one.
            written = await self.write(record, ttl_ms, seq, final=True, make=function is not None)
        except nats.js.errors.NoStreamResponseError:
            log.debug("dropping Async %s: no function, no collection", record.invocation_id)
            return
        if written is None:
            return
        not_dead_lettered: Exception | None = None
        if error is not None and function is not None:
            try:
                await self.dead_letters.add(_dead_letter(record, msg))
                self.dead_lettered(record.collection_topic, record.service)
            except Exception as exc:  # announced all the same; the redelivery dead-letters it
                not_dead_lettered = exc
        await self.events.publish(
            subjects.result_subject(record.collection_topic, record.service, record.status),
            written[0],
        )
        if not_dead_lettered is not None:
            raise not_dead_lettered

    async def announce_again(self, record: MonitorRecord) -> None:
        """The result event of a record found final on a redelivery: the worker that wrote it
        was lost before its ack, perhaps before it announced the result too."""
        subject = subjects.result_subject(record.collection_topic, record.service, record.status)
        await self.events.publish(subject, encode(record))

    async def ensure_dead_letter(self, record: MonitorRecord, msg: Msg) -> None:
        """Dead-letter a failed record whose worker may have been lost before it could."""
        ct, ft, invocation_id = record.collection_topic, record.service, record.invocation_id
        if record.error_code == FunctionNotFound.code or await self.view.function(ct, ft) is None:
            return  # failures of deleted functions are not dead-lettered
        if await self.dead_letters.get(ct, ft, invocation_id) is None:
            await self.dead_letters.add(_dead_letter(record, msg))


def _dead_letter(record: MonitorRecord, msg: Msg) -> DeadLetter:
    headers = msg.headers or {}
    if (origin := origin_of(headers)) is not None:  # a redrive runs the trigger's alias too
        headers = trigger_headers(headers, origin.alias)
    payload = msg.data or b"null"
    kept = is_json(payload)
    return DeadLetter(
        invocation_id=record.invocation_id,
        collection_topic=record.collection_topic,
        service=record.service,
        attempts=record.attempts,
        error_code=record.error_code if isinstance(record.error_code, str) else InternalError.code,
        error_message=record.error_message if isinstance(record.error_message, str) else "",
        failed_at=int(time.time() * 1000),
        headers={k: v for k in CALL_OPTIONS if (v := headers.get(k))},
        payload=msgspec.Raw(payload) if kept else msgspec.UNSET,
        payload_omitted=not kept,
    )
