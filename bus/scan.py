"""Read every current message under a subject filter once, through a throwaway pull consumer.

A pull consumer's ``num_pending`` is exact before the first fetch, and each message carries the
count still behind it, so the scan knows when it has seen everything. (nats-py's KV watch decides
"initial values done" from a client-side count and can report an empty bucket too early.)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from schemas.errors import Unavailable

LISTING_BUDGET_S = 10.0  # how long one listing may read before it answers with what it has
_FETCH_BATCH = 256
_FETCH_WAIT_S = 5.0
# A scan with no budget of its own (the registry's: it must be whole) gives up after this long
# without progress.
_STALL_S = 30.0
T = TypeVar("T")


class ScanIncomplete(Unavailable):
    """The scan ran out of its time budget (or the server stopped answering) before the end;
    where a scan must be whole (the registry's), the caller answers 503."""


def scan_last_per_subject(
    js: JetStreamContext, stream: str, subject_filter: str, *, budget_s: float | None = None
) -> AsyncIterator[bytes]:
    """The bodies of the last message of each subject, in stream order, as the stream held them
    when the scan began (a subject written again during the scan would otherwise come twice, its
    old message and its new one); deletions are skipped.

    A fetch that times out is not the end: the consumer says whether messages are still to come
    (big ones take long), and then the scan goes on with smaller batches. Raises
    ``ScanIncomplete`` past ``budget_s`` (or after ``_STALL_S`` without progress)."""
    config = ConsumerConfig(deliver_policy=DeliverPolicy.LAST_PER_SUBJECT)
    return _scan(js, stream, subject_filter, config, budget_s)


def scan_stored_since(
    js: JetStreamContext, stream: str, subject_filter: str, since: float, *, budget_s: float
) -> AsyncIterator[bytes]:
    """The bodies of the messages the server stored at or after ``since`` (unix seconds, its
    clock), in stream order, as the stream held them when the scan began: in a stream that keeps
    one message per subject, the current message of each subject written since then, and nothing
    older is read. Raises ``ScanIncomplete`` as ``scan_last_per_subject`` does."""
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_TIME,
        opt_start_time=datetime.fromtimestamp(since, UTC),
    )
    return _scan(js, stream, subject_filter, config, budget_s)


async def _scan(
    js: JetStreamContext,
    stream: str,
    subject_filter: str,
    config: ConsumerConfig,
    budget_s: float | None,
) -> AsyncIterator[bytes]:
    """What a throwaway consumer with ``config``'s delivery policy delivers, up to the stream's
    last message when it began; the consumer is deleted at the end."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget_s if budget_s is not None else None
    try:
        last_seq = (await js.stream_info(stream)).state.last_seq
        sub = await js.pull_subscribe(
            subject_filter,
            stream=stream,
            config=dataclasses.replace(
                config, ack_policy=AckPolicy.NONE, inactive_threshold=30, mem_storage=True
            ),
        )
    except nats.js.errors.NotFoundError:  # no such stream (yet): nothing to read
        return
    consumer: str | None = None
    try:
        info = await sub.consumer_info()
        consumer = info.name
        pending = info.num_pending or 0
        batch = _FETCH_BATCH
        progress = loop.time()
        while pending > 0:
            wait = _FETCH_WAIT_S if deadline is None else max(0.1, deadline - loop.time())
            try:
                msgs = await sub.fetch(min(batch, pending), timeout=min(_FETCH_WAIT_S, wait))
            except TimeoutError:
                # Still to come: what the server holds and what already reached this client.
                info = await sub.consumer_info()
                pending = (info.num_pending or 0) + sub.pending_msgs  # 0: expired, deleted
                if pending and deadline is not None and loop.time() > deadline:
                    raise ScanIncomplete(
                        f"{pending} messages not read within {budget_s} s"
                    ) from None
                if pending and loop.time() - progress > _STALL_S:
                    raise ScanIncomplete(f"no progress for {_STALL_S} s") from None
                batch = max(1, batch // 4)
                continue
            progress = loop.time()
            for msg in msgs:
                meta = msg.metadata
                if meta.sequence.stream > last_seq:  # written since the scan began: done
                    return
                pending = meta.num_pending
                if msg.data:
                    yield msg.data
            if pending and deadline is not None and loop.time() > deadline:
                raise ScanIncomplete(f"{pending} messages not read within {budget_s} s")
    finally:
        await sub.unsubscribe()
        if consumer is not None:  # else it lingers on the server for inactive_threshold
            with contextlib.suppress(nats.errors.Error):
                await js.delete_consumer(stream, consumer)


@dataclass
class Page(Generic[T]):
    """One page of a listing; ``total`` counts what the scan saw, all of it when ``complete``."""

    items: list[T]
    total: int
    complete: bool


async def newest_page(
    js: JetStreamContext,
    stream: str,
    subject_filter: str,
    decode: Callable[[bytes], T],
    *,
    accept: Callable[[T], bool] | None = None,
    limit: int,
    offset: int,
    budget_s: float = LISTING_BUDGET_S,
) -> Page[T]:
    """One page, newest first, of the last message per subject (those ``accept`` takes), and
    how many there are in all; within ``budget_s``, else what was read by then, marked so."""
    keep: deque[T] = deque(maxlen=offset + limit)
    total = 0
    complete = True
    try:
        async for data in scan_last_per_subject(js, stream, subject_filter, budget_s=budget_s):
            item = decode(data)
            if accept is None or accept(item):
                total += 1
                keep.append(item)
    except ScanIncomplete:
        complete = False
    newest_first = list(reversed(keep))
    return Page(newest_first[offset : offset + limit], total, complete)
