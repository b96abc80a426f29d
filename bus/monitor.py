"""Monitor records: one per invocation in a JetStream stream, each with the function's TTL.

Subjects are ``computebus.monitor.<ct>.<ft>.<invocation_id>`` with one message kept per
subject, so a later status of the same invocation (queued -> running -> succeeded) replaces the
earlier one. The per-message TTL (``Nats-TTL``) makes the server itself forget expired records.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    PubAck,
    StorageType,
    StreamConfig,
)

from bus import subjects
from schemas.codec import decoder_for, encode
from schemas.invocations import MonitorRecord

_FETCH_BATCH = 256


def ttl_seconds(ttl_ms: int) -> int:
    """JetStream TTLs are whole seconds, at least one."""
    return max(1, math.ceil(ttl_ms / 1000))


class MonitorStore:
    def __init__(self, js: JetStreamContext) -> None:
        self.js = js

    @classmethod
    async def open(cls, js: JetStreamContext, *, max_bytes: int = 1 << 30) -> MonitorStore:
        config = StreamConfig(
            name=subjects.MONITOR_STREAM,
            subjects=[f"{subjects.MONITOR_PREFIX}.>"],
            storage=StorageType.FILE,
            max_msgs_per_subject=1,
            max_bytes=max_bytes,
            discard=DiscardPolicy.OLD,
            allow_msg_ttl=True,
            allow_direct=True,
        )
        try:
            await js.stream_info(subjects.MONITOR_STREAM)
        except nats.js.errors.NotFoundError:
            await js.add_stream(config)
        return cls(js)

    async def write(self, record: MonitorRecord, ttl_ms: int) -> asyncio.Future[PubAck]:
        """Send the record now; the returned future resolves when the server has stored it."""
        subject = subjects.monitor_subject(record.collection_topic, record.service, record.invocation_id)
        return await self.js.publish_async(subject, encode(record), msg_ttl=ttl_seconds(ttl_ms))

    async def get(self, ct: str, ft: str, invocation_id: str) -> MonitorRecord | None:
        try:
            msg = await self.js.get_last_msg(
                subjects.MONITOR_STREAM, subjects.monitor_subject(ct, ft, invocation_id), direct=True
            )
        except nats.js.errors.NotFoundError:
            return None
        return decoder_for(MonitorRecord).decode(msg.data) if msg.data else None

    async def list(
        self, ct: str, ft: str, *, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[MonitorRecord], int]:
        """Newest first. Reads the function's records once through a throwaway consumer."""
        keep: deque[MonitorRecord] = deque(maxlen=offset + limit)
        total = 0
        sub = await self.js.pull_subscribe(
            subjects.monitor_filter(ct, ft),
            stream=subjects.MONITOR_STREAM,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.NONE,
                inactive_threshold=30,
                mem_storage=True,
            ),
        )
        decode = decoder_for(MonitorRecord).decode
        try:
            info = await sub.consumer_info()
            pending = info.num_pending
            while pending > 0:
                msgs = await sub.fetch(min(_FETCH_BATCH, pending), timeout=5)
                for msg in msgs:
                    pending = msg.metadata.num_pending
                    if not msg.data:
                        continue
                    record = decode(msg.data)
                    if status is None or record.status == status:
                        total += 1
                        keep.append(record)
        finally:
            await sub.unsubscribe()
        newest_first = list(reversed(keep))
        return newest_first[offset : offset + limit], total
