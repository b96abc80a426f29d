"""The async invocation queue: a work-queue JetStream stream and the one durable consumer that
every worker pulls from.

A message is an invocation: its subject names the function, its body is the payload, its headers
carry the options (``Compute-*``) and ``Nats-Msg-Id``, which the stream deduplicates within its
window. The stream refuses new messages when full rather than dropping queued ones, and a message
leaves it only when a worker acks it (after the invocation's final record is stored).
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    PubAck,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from bus import subjects
from bus.streams import ensure_stream

MSG_ID = "Nats-Msg-Id"
_PUBLISH_TIMEOUT_S = 5.0


class AsyncQueue:
    def __init__(self, js: JetStreamContext) -> None:
        self.js = js

    @classmethod
    async def open(
        cls,
        js: JetStreamContext,
        *,
        dedupe_window_s: float,
        ack_wait_s: float,
        max_bytes: int,
    ) -> AsyncQueue:
        """Create the stream and the shared consumer, or bring their settings up to date."""
        config = StreamConfig(
            name=subjects.ASYNC_STREAM,
            subjects=[subjects.ASYNC_WILDCARD],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            discard=DiscardPolicy.NEW,
            max_bytes=max_bytes,
            duplicate_window=dedupe_window_s,
        )
        await ensure_stream(js, config)
        await js.add_consumer(
            subjects.ASYNC_STREAM,
            ConsumerConfig(
                durable_name=subjects.ASYNC_CONSUMER,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=ack_wait_s,
                max_deliver=-1,  # attempts are counted against the function's max_attempts
                max_ack_pending=-1,
            ),
        )
        return cls(js)

    async def submit(self, ct: str, ft: str, payload: bytes, headers: dict[str, str]) -> PubAck:
        """Store one invocation; returns once the stream has it (``duplicate`` if already had)."""
        return await self.js.publish(
            subjects.async_subject(ct, ft), payload, timeout=_PUBLISH_TIMEOUT_S, headers=headers
        )

    async def pull(self, pending_msgs_limit: int) -> JetStreamContext.PullSubscription:
        return await self.js.pull_subscribe_bind(
            subjects.ASYNC_CONSUMER,
            stream=subjects.ASYNC_STREAM,
            pending_msgs_limit=pending_msgs_limit,
        )
