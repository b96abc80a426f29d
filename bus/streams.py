"""Small JetStream helpers the stores share: make sure a stream exists with our settings, and
read the last message on one subject."""

from __future__ import annotations

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg, StreamConfig

# Room for the subject and headers (TTL, expectations) beside a stored body in one message.
MESSAGE_HEADROOM = 4096
# What an invocation's reply or request needs beside its payload (headers, the error envelope).
REPLY_HEADROOM = 64 * 1024


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create the stream, or bring an existing one's settings up to ``config``."""
    assert config.name is not None
    try:
        await js.stream_info(config.name)
    except nats.js.errors.NotFoundError:
        await js.add_stream(config)
    else:
        await js.update_stream(config)


async def last_message(js: JetStreamContext, stream: str, subject: str) -> RawStreamMsg | None:
    """The last message on ``subject`` (a direct get, served by any replica), or None (also
    when there is no such stream: then no replica answers)."""
    try:
        msg = await js.get_last_msg(stream, subject, direct=True)
    except (nats.js.errors.NotFoundError, nats.errors.NoRespondersError):
        return None
    return msg
