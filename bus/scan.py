"""Read every current message under a subject filter once, through a throwaway pull consumer.

A pull consumer's ``num_pending`` is exact before the first fetch, and each message carries the
count still behind it, so the scan knows when it has seen everything. (nats-py's KV watch decides
"initial values done" from a client-side count and can report an empty bucket too early.)
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

_FETCH_BATCH = 256
T = TypeVar("T")


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


async def newest_page(
    js: JetStreamContext,
    stream: str,
    subject_filter: str,
    decode: Callable[[bytes], T],
    *,
    accept: Callable[[T], bool] | None = None,
    limit: int,
    offset: int,
) -> tuple[list[T], int]:
    """One page, newest first, of the last message per subject (those ``accept`` takes), and
    how many there are in all."""
    keep: deque[T] = deque(maxlen=offset + limit)
    total = 0
    async for data in scan_last_per_subject(js, stream, subject_filter):
        item = decode(data)
        if accept is None or accept(item):
            total += 1
            keep.append(item)
    newest_first = list(reversed(keep))
    return newest_first[offset : offset + limit], total
