"""Monitor records: one per invocation, each with the function's TTL, in a stream per
collection (``COMPUTEBUS_MONITOR_<ct>``, at most ``max_bytes``, its own oldest dropped first).

Subjects are ``computebus.monitor.<ct>.<ft>.<invocation_id>`` with one message kept per
subject, so a later status of the same invocation (queued -> running -> succeeded) replaces the
earlier one. The per-message TTL (``Nats-TTL``) makes the server itself forget expired records.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import NamedTuple

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import (
    DiscardPolicy,
    RawStreamMsg,
    StorageType,
    StreamConfig,
)

from bus import subjects
from bus.collection_streams import CollectionStreams, drop_shared_stream
from bus.scan import LISTING_BUDGET_S, Page, ScanIncomplete, newest_page, scan_stored_since
from bus.stream_publish import StreamPublisher
from bus.streams import MESSAGE_HEADROOM, last_message
from schemas.codec import decoder_for, encode
from schemas.invocation_stats import Sample
from schemas.invocations import MonitorRecord

log = logging.getLogger("computebus.monitor")


def _without_payloads(record: MonitorRecord, max_bytes: int) -> MonitorRecord:
    slim = msgspec.structs.replace(
        record, input=msgspec.UNSET, output=msgspec.UNSET, payload_omitted=True
    )
    if len(encode(slim)) > max_bytes:  # only with a tiny max_payload: keep the tail of the logs
        keep = max(0, max_bytes // 2)
        slim = msgspec.structs.replace(
            slim, logs=slim.logs[-keep:], logs_truncated=True, error_details=msgspec.UNSET
        )
    return slim


_EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
_MSG_TTL = "Nats-TTL"
# JetStream's error codes when that expectation fails: a single server's, a clustered stream's.
_WRONG_LAST_SEQUENCE = (10071, 10164)
_CAS_TIMEOUT_S = 10.0


def ttl_seconds(ttl_ms: int) -> int:
    """JetStream TTLs are whole seconds, at least one."""
    return max(1, math.ceil(ttl_ms / 1000))


def _decode_or_none(data: bytes) -> MonitorRecord | None:
    """A record, or None for one that cannot be read (written by an older or broken writer):
    one bad record must not make a whole listing fail."""
    try:
        return _record_decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError):
        log.warning("skipping an unreadable monitor record")
        return None


_record_decoder = decoder_for(MonitorRecord)
_sample_decoder = decoder_for(Sample)
# A record is stored when it is written, after it started; by the server's clock, which may be a
# little behind the worker's that stamped ``started``.
_CLOCK_SLACK_S = 10.0


def monitor_stream_config(ct: str, max_bytes: int) -> StreamConfig:
    return StreamConfig(
        name=subjects.monitor_stream(ct),
        subjects=[subjects.monitor_filter(ct, "*")],
        storage=StorageType.FILE,
        max_msgs_per_subject=1,
        max_bytes=max_bytes,
        discard=DiscardPolicy.OLD,
        allow_msg_ttl=True,
        allow_direct=True,
    )


class StoredRecord(NamedTuple):
    """A record as sent (the same bytes go out on the result subject) and its storage ack (the
    stored message's sequence)."""

    data: bytes
    ack: asyncio.Future[int]


class MonitorStore:
    """Monitor records: writes (plain and compare-and-set), reads and listings, per collection."""

    def __init__(
        self, nc: Client, max_record_bytes: int, max_bytes: int, replicas: int = 1
    ) -> None:
        self.js = js = nc.jetstream()
        self.publisher = StreamPublisher(nc)
        self.max_record_bytes = max_record_bytes
        self.streams = CollectionStreams(
            js, lambda ct: monitor_stream_config(ct, max_bytes), replicas=replicas
        )

    @classmethod
    async def open(
        cls, nc: Client, *, max_bytes: int = 256 << 20, replicas: int = 1
    ) -> MonitorStore:
        """``max_bytes``: each collection's budget for its records."""
        await drop_shared_stream(nc.jetstream(), subjects.SHARED_MONITOR_STREAM)
        return cls(nc, nc.max_payload - MESSAGE_HEADROOM, max_bytes, replicas)

    def _encoded(self, record: MonitorRecord) -> bytes:
        data = encode(record)
        if len(data) > self.max_record_bytes:
            data = encode(_without_payloads(record, self.max_record_bytes))
        return data

    async def write(self, record: MonitorRecord, ttl_ms: int) -> StoredRecord:
        """Send the record now; ``ack`` resolves when the server has stored it.

        A record too big for one message keeps everything but its payloads (it says so in
        ``payload_omitted``).
        """
        ct = record.collection_topic
        await self.streams.ready(ct)
        data = self._encoded(record)
        subject = subjects.monitor_subject(ct, record.service, record.invocation_id)
        ack = await self.publisher.publish(subject, data, {_MSG_TTL: str(ttl_seconds(ttl_ms))})

        def stored(ack: asyncio.Future[int]) -> None:
            failed = None if ack.cancelled() else ack.exception()
            if isinstance(failed, nats.js.errors.NoStreamResponseError):
                self.streams.forget(ct)

        ack.add_done_callback(stored)
        return StoredRecord(data, ack)

    async def write_expecting(
        self, record: MonitorRecord, ttl_ms: int, last_seq: int, *, make: bool = True
    ) -> tuple[bytes, int] | None:
        """Store ``record`` only if its subject's last message is still ``last_seq`` (0: none).

        Returns the bytes written and the new sequence, or None when another writer came first:
        this compare-and-set is what keeps a redelivered Async invocation to one final record.
        With ``make=False`` a collection without a stream is not given one: raises
        ``NoStreamResponseError``.
        """
        ct = record.collection_topic
        data = self._encoded(record)
        subject = subjects.monitor_subject(ct, record.service, record.invocation_id)
        for _ in range(2):  # a second time if the collection's stream was removed under us
            if not await self.streams.ready(ct, make=make):
                break
            headers = {
                _EXPECTED_LAST_SUBJECT_SEQ: str(last_seq),
                _MSG_TTL: str(ttl_seconds(ttl_ms)),
            }
            try:
                ack = await self.publisher.publish(subject, data, headers)
                seq = await asyncio.wait_for(ack, _CAS_TIMEOUT_S)
            except TimeoutError:
                raise nats.errors.TimeoutError from None
            except nats.js.errors.NoStreamResponseError:
                self.streams.forget(ct)
                continue
            except nats.js.errors.APIError as exc:
                if exc.err_code in _WRONG_LAST_SEQUENCE:
                    return None
                raise
            return data, seq
        raise nats.js.errors.NoStreamResponseError

    async def current(
        self, ct: str, ft: str, invocation_id: str
    ) -> tuple[MonitorRecord | None, int]:
        """The record and its stream sequence (0 when there is none), for ``write_expecting``
        (read from the stream's leader)."""
        msg = await self._last(ct, ft, invocation_id, from_leader=True)
        if msg is None:
            return None, 0
        record = _decode_or_none(msg.data) if msg.data else None
        return record, msg.seq or 0

    async def get(self, ct: str, ft: str, invocation_id: str) -> MonitorRecord | None:
        msg = await self._last(ct, ft, invocation_id)
        return _decode_or_none(msg.data) if msg is not None and msg.data else None

    async def _last(
        self, ct: str, ft: str, invocation_id: str, *, from_leader: bool = False
    ) -> RawStreamMsg | None:
        subject = subjects.monitor_subject(ct, ft, invocation_id)
        stream = subjects.monitor_stream(ct)
        return await last_message(self.js, stream, subject, from_leader=from_leader)

    async def list(
        self, ct: str, ft: str, *, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> Page[MonitorRecord]:
        """Newest first. Reads the function's records once through a throwaway consumer."""

        def wanted(record: MonitorRecord | None) -> bool:
            return record is not None and (status is None or record.status == status)

        page = await newest_page(
            self.js,
            subjects.monitor_stream(ct),
            subjects.monitor_filter(ct, ft),
            _decode_or_none,
            accept=wanted,
            limit=limit,
            offset=offset,
        )
        records = [record for record in page.items if record is not None]
        return Page(records, page.total, page.complete)

    async def samples_since(
        self, ct: str, ft: str, since: int, *, budget_s: float = LISTING_BUDGET_S
    ) -> Page[Sample]:
        """The records of function ``ft`` of ``ct`` (``*``: of all its functions) that started
        at or after ``since`` (unix seconds), as the stats read them, in stream order; not
        ``complete`` when they could not all be read within ``budget_s``. Only what the server
        stored since then is read: a record is stored again when it finishes, so no older
        message can be one of them."""
        samples = []
        since_ms = since * 1000
        scan = scan_stored_since(
            self.js,
            subjects.monitor_stream(ct),
            subjects.monitor_filter(ct, ft),
            since - _CLOCK_SLACK_S,
            budget_s=budget_s,
        )
        try:
            async for data in scan:
                try:
                    sample = _sample_decoder.decode(data)
                except (msgspec.DecodeError, UnicodeDecodeError):
                    continue  # one bad record must not make the stats fail
                if sample.started >= since_ms:
                    samples.append(sample)
        except ScanIncomplete:
            return Page(samples, len(samples), complete=False)
        return Page(samples, len(samples), complete=True)
