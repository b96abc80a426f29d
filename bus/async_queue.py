"""The async invocation queue: a work-queue JetStream stream with one durable consumer per
function, which every worker pulls from (so one function's backlog never stands in front of
another's messages).

A message is an invocation: its subject names the function, its body is the payload, its headers
carry the options (``Compute-*``) and ``Nats-Msg-Id``, which the stream deduplicates within its
window. The stream refuses new messages when full rather than dropping queued ones, and a message
leaves it only when a worker acks it (after the invocation's final record is stored). A
function's consumer is made when a worker first sees work for it, and the server removes it
after ``IDLE_CONSUMER_S`` without a pull.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    PubAck,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamSource,
    SubjectTransform,
)

from bus import subjects
from bus.consumer_pull import ConsumerPull
from bus.streams import ensure_stream
from bus.subject_triggers import trigger_sources
from schemas import ids

log = logging.getLogger("computebus.async")

MSG_ID = "Nats-Msg-Id"
_PUBLISH_TIMEOUT_S = 5.0
IDLE_CONSUMER_S = 3600.0


class AsyncQueue:
    """The Async work queue: submitting invocations, finding the functions with work, and each
    function's own pull consumer."""

    def __init__(self, js: JetStreamContext, ack_wait_s: float) -> None:
        self.js = js
        self.ack_wait_s = ack_wait_s

    @classmethod
    async def open(
        cls,
        js: JetStreamContext,
        *,
        dedupe_window_s: float,
        ack_wait_s: float,
        max_bytes: int,
        replicas: int = 1,
    ) -> AsyncQueue:
        """Create the stream, or bring its settings up to date."""
        config = StreamConfig(
            name=subjects.ASYNC_STREAM,
            subjects=[subjects.ASYNC_WILDCARD],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            discard=DiscardPolicy.NEW,
            max_bytes=max_bytes,
            duplicate_window=dedupe_window_s,
            num_replicas=replicas,
            # Schedule ticks (bus/schedules.py), each on its function's .async subject, and the
            # subject triggers' streams (bus/subject_triggers.py), kept as they are.
            sources=[
                StreamSource(
                    name=subjects.SCHEDULES_STREAM,
                    subject_transforms=[
                        SubjectTransform(src=subjects.TICK_SOURCE, dest=subjects.TICK_AS_ASYNC)
                    ],
                )
            ],
        )
        with contextlib.suppress(nats.js.errors.NotFoundError):
            found = (await js.stream_info(subjects.ASYNC_STREAM)).config
            config.sources = [*(config.sources or []), *trigger_sources(found)]
        await ensure_stream(js, config)
        # A work queue allows no overlapping consumers: the old shared one must go.
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_consumer(subjects.ASYNC_STREAM, subjects.ASYNC_LEGACY_CONSUMER)
        return cls(js, ack_wait_s)

    async def submit(self, ct: str, ft: str, payload: bytes, headers: dict[str, str]) -> PubAck:
        """Store one invocation; returns once the stream has it (``duplicate`` if already had)."""
        return await self.js.publish(
            subjects.async_subject(ct, ft), payload, timeout=_PUBLISH_TIMEOUT_S, headers=headers
        )

    async def queued(self) -> dict[tuple[str, str], int]:
        """Each function with messages in the stream (queued, running or waiting to retry), and
        how many."""
        info = await self.js.stream_info(
            subjects.ASYNC_STREAM, subjects_filter=subjects.ASYNC_WILDCARD
        )
        found = {}
        for subject, count in (info.state.subjects or {}).items():
            where = subjects.parse_async_subject(subject)
            if where is not None and ids.is_function_ref(*where):
                found[where] = count
            else:  # published straight to NATS for an id no function can have: never runs
                log.warning(
                    "dropping %d Async messages on %s: not a function's subject", count, subject
                )
                await self.js.purge_stream(subjects.ASYNC_STREAM, subject=subject)
        return found

    async def lane(
        self,
        nc: Client,
        ct: str,
        ft: str,
        deliver: Callable[[Msg], None],
        pending_msgs_limit: int,
    ) -> ConsumerPull:
        """Pulls on the function's own consumer (made or updated first), its messages going to
        ``deliver``."""
        durable = subjects.async_consumer(ct, ft)
        await self.js.add_consumer(
            subjects.ASYNC_STREAM,
            ConsumerConfig(
                durable_name=durable,
                filter_subject=subjects.async_subject(ct, ft),
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self.ack_wait_s,
                max_deliver=-1,  # attempts are counted against the function's max_attempts
                max_ack_pending=-1,
                inactive_threshold=IDLE_CONSUMER_S,
            ),
        )
        pull = ConsumerPull(nc, subjects.ASYNC_STREAM, durable, deliver)
        await pull.open(pending_msgs_limit)
        return pull

    async def ring_on_submit(
        self, nc: Client, ring: Callable[[tuple[str, str]], Awaitable[None]]
    ) -> Subscription:
        """Call ``ring((ct, ft))`` as invocations are published (one worker of all hears each:
        the others find the work when they next look at the stream)."""

        async def heard(msg: Msg) -> None:
            where = subjects.parse_async_subject(msg.subject)
            if where is not None and ids.is_function_ref(*where):
                await ring(where)

        return await nc.subscribe(
            subjects.ASYNC_WILDCARD, queue=subjects.ASYNC_BELL_QUEUE, cb=heard
        )
