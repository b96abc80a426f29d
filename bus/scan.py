"""Read every current message under a subject filter once, through a throwaway pull consumer.

A pull consumer's ``num_pending`` is exact before the first fetch, and each message carries the
count still behind it, so the scan knows when it has seen everything. (nats-py's KV watch decides
"initial values done" from a client-side count and can report an empty bucket too early.)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

_FETCH_BATCH = 256


async def scan_last_per_subject(
    js: JetStreamContext, stream: str, subject_filter: str
) -> AsyncIterator[bytes]:
    """The bodies of the last message of each subject, in stream order; deletions are skipped."""
    sub = await js.pull_subscribe(
        subject_filter,
        stream=stream,
        config=ConsumerConfig(
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=30,
            mem_storage=True,
        ),
    )
    consumer: str | None = None
    try:
        info = await sub.consumer_info()
        consumer = info.name
        pending = info.num_pending or 0
        while pending > 0:
            try:
                msgs = await sub.fetch(min(_FETCH_BATCH, pending), timeout=5)
            except TimeoutError:
                return  # the rest expired (TTL) or was deleted after consumer_info counted it
            for msg in msgs:
                pending = msg.metadata.num_pending
                if msg.data:
                    yield msg.data
    finally:
        await sub.unsubscribe()
        if consumer is not None:  # else it lingers on the server for inactive_threshold
            with contextlib.suppress(nats.errors.Error):
                await js.delete_consumer(stream, consumer)
