"""Dead letters: Async invocations that failed for good, one message per invocation, kept for
``max_age`` so they can be listed and sent again (redriven). Each collection has a stream of its
own (``COMPUTEBUS_DEAD_LETTERS_<ct>``, at most ``max_bytes``, its own oldest dropped first)."""

from __future__ import annotations

import contextlib

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, StorageType, StreamConfig

from bus import subjects
from bus.collection_streams import CollectionStreams, drop_shared_stream
from bus.scan import Page, newest_page
from bus.streams import MESSAGE_HEADROOM, last_message
from schemas.codec import decoder_for, encode
from schemas.invocations import DeadLetter


class DeadLetters:
    """Dead letters: add, read, list and remove them, in each collection's own stream."""

    def __init__(
        self,
        js: JetStreamContext,
        max_letter_bytes: int,
        *,
        max_age_s: float,
        max_bytes: int,
        replicas: int = 1,
    ) -> None:
        self.js = js
        self.max_letter_bytes = max_letter_bytes
        self.streams = CollectionStreams(
            js,
            lambda ct: _stream_config(ct, max_age_s=max_age_s, max_bytes=max_bytes),
            replicas=replicas,
        )

    @classmethod
    async def open(
        cls,
        js: JetStreamContext,
        max_message_bytes: int,
        *,
        max_age_s: float,
        max_bytes: int,
        replicas: int = 1,
    ) -> DeadLetters:
        """``max_bytes``: each collection's budget for its dead letters."""
        await drop_shared_stream(js, subjects.SHARED_DEAD_LETTER_STREAM)
        return cls(
            js,
            max_message_bytes - MESSAGE_HEADROOM,
            max_age_s=max_age_s,
            max_bytes=max_bytes,
            replicas=replicas,
        )

    async def add(self, letter: DeadLetter) -> None:
        """Store ``letter``; one too big for a message keeps all but its payload."""
        subject = subjects.dead_letter_subject(
            letter.collection_topic, letter.service, letter.invocation_id
        )
        data = encode(letter)
        if len(data) > self.max_letter_bytes:  # keep the letter, not its payload
            slim = msgspec.structs.replace(letter, payload=msgspec.UNSET, payload_omitted=True)
            data = encode(slim)
        await self.streams.ready(letter.collection_topic)
        try:
            await self.js.publish(subject, data)
        except nats.js.errors.NoStreamResponseError:  # removed under us: make it again next time
            self.streams.forget(letter.collection_topic)
            raise

    async def get(self, ct: str, ft: str, invocation_id: str) -> tuple[DeadLetter, int] | None:
        """The dead letter and its stream sequence (for ``remove``), or None."""
        subject = subjects.dead_letter_subject(ct, ft, invocation_id)
        msg = await last_message(self.js, subjects.dead_letter_stream(ct), subject)
        if msg is None or not msg.data:
            return None
        return decoder_for(DeadLetter).decode(msg.data), msg.seq or 0

    async def remove(self, ct: str, ft: str, invocation_id: str, seq: int) -> None:
        """Remove that dead letter, but not a newer one for the same invocation (a redrive that
        failed again)."""
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await self.js.purge_stream(
                subjects.dead_letter_stream(ct),
                subject=subjects.dead_letter_subject(ct, ft, invocation_id),
                seq=seq + 1,  # purge below this sequence
            )

    async def remove_function(self, ct: str, ft: str) -> None:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await self.js.purge_stream(
                subjects.dead_letter_stream(ct), subject=subjects.dead_letter_filter(ct, ft)
            )

    async def list(self, ct: str, ft: str, *, limit: int = 50, offset: int = 0) -> Page[DeadLetter]:
        """Newest first."""
        return await newest_page(
            self.js,
            subjects.dead_letter_stream(ct),
            subjects.dead_letter_filter(ct, ft),
            decoder_for(DeadLetter).decode,
            limit=limit,
            offset=offset,
        )


def _stream_config(ct: str, *, max_age_s: float, max_bytes: int) -> StreamConfig:
    return StreamConfig(
        name=subjects.dead_letter_stream(ct),
        subjects=[subjects.dead_letter_filter(ct, "*")],
        storage=StorageType.FILE,
        max_msgs_per_subject=1,
        max_age=max_age_s,
        max_bytes=max_bytes,
        discard=DiscardPolicy.OLD,
        allow_direct=True,
    )
