"""Dead letters: Async invocations that failed for good, one message per invocation, kept for
``max_age`` so they can be listed and sent again (redriven)."""

from __future__ import annotations

import msgspec
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, StorageType, StreamConfig

from bus import subjects
from bus.scan import Page, newest_page
from bus.streams import MESSAGE_HEADROOM, ensure_stream, last_message
from schemas.codec import decoder_for, encode
from schemas.invocations import DeadLetter


class DeadLetters:
    def __init__(self, js: JetStreamContext, max_letter_bytes: int) -> None:
        self.js = js
        self.max_letter_bytes = max_letter_bytes

    @classmethod
    async def open(
        cls, js: JetStreamContext, max_message_bytes: int, *, max_age_s: float, max_bytes: int
    ) -> DeadLetters:
        config = StreamConfig(
            name=subjects.DEAD_LETTER_STREAM,
            subjects=[f"{subjects.DEAD_LETTER_PREFIX}.>"],
            storage=StorageType.FILE,
            max_msgs_per_subject=1,
            max_age=max_age_s,
            max_bytes=max_bytes,
            discard=DiscardPolicy.OLD,
            allow_direct=True,
        )
        await ensure_stream(js, config)
        return cls(js, max_message_bytes - MESSAGE_HEADROOM)

    async def add(self, letter: DeadLetter) -> None:
        """Store ``letter``; one too big for a message keeps all but its payload."""
        subject = subjects.dead_letter_subject(
            letter.collection_topic, letter.service, letter.invocation_id
        )
        data = encode(letter)
        if len(data) > self.max_letter_bytes:  # keep the letter, not its payload
            slim = msgspec.structs.replace(letter, payload=msgspec.UNSET, payload_omitted=True)
            data = encode(slim)
        await self.js.publish(subject, data)

    async def get(self, ct: str, ft: str, invocation_id: str) -> tuple[DeadLetter, int] | None:
        """The dead letter and its stream sequence (for ``remove``), or None."""
        subject = subjects.dead_letter_subject(ct, ft, invocation_id)
        msg = await last_message(self.js, subjects.DEAD_LETTER_STREAM, subject)
        if msg is None or not msg.data:
            return None
        return decoder_for(DeadLetter).decode(msg.data), msg.seq or 0

    async def remove(self, ct: str, ft: str, invocation_id: str, seq: int) -> None:
        """Remove that dead letter, but not a newer one for the same invocation (a redrive that
        failed again)."""
        await self.js.purge_stream(
            subjects.DEAD_LETTER_STREAM,
            subject=subjects.dead_letter_subject(ct, ft, invocation_id),
            seq=seq + 1,  # purge below this sequence
        )

    async def remove_function(self, ct: str, ft: str) -> None:
        await self.js.purge_stream(
            subjects.DEAD_LETTER_STREAM, subject=subjects.dead_letter_filter(ct, ft)
        )

    async def list(self, ct: str, ft: str, *, limit: int = 50, offset: int = 0) -> Page[DeadLetter]:
        """Newest first."""
        return await newest_page(
            self.js,
            subjects.DEAD_LETTER_STREAM,
            subjects.dead_letter_filter(ct, ft),
            decoder_for(DeadLetter).decode,
            limit=limit,
            offset=offset,
        )
