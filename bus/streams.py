"""Small JetStream helpers the stores share: make sure a stream exists with our settings, and
read the last message on one subject."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg, StreamConfig

# Room for the subject and headers (TTL, expectations) beside a stored body in one message.
MESSAGE_HEADROOM = 4096
# What an invocation's reply or request needs beside its payload (headers, the error envelope).
REPLY_HEADROOM = 64 * 1024

REPLICAS_WAIT_S = 15.0

log = logging.getLogger("computebus.bus")


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create the stream, or bring an existing one's settings up to ``config``."""
    assert config.name is not None
    try:
        info = await js.stream_info(config.name)
    except nats.js.errors.NotFoundError:
        await js.add_stream(config)
        return
    await _update(js, info.config, config)


async def ensure_replicas(js: JetStreamContext, stream: str, replicas: int) -> None:
    """Bring ``stream`` (a bucket's or object store's too) to ``replicas`` copies in place."""
    found = (await js.stream_info(stream)).config
    if (found.num_replicas or 1) != replicas:
        await _update(js, found, replace(found, num_replicas=replicas))


async def _update(js: JetStreamContext, found: StreamConfig, wanted: StreamConfig) -> None:
    """Apply ``wanted``; a change of replica count is logged and waited out."""
    assert wanted.name is not None
    before, after = found.num_replicas or 1, wanted.num_replicas or 1
    if before != after:
        log.info("stream %s has %d replica(s); bringing it to %d", wanted.name, before, after)
    await js.update_stream(wanted)
    if before != after:
        await wait_for_replicas(js, wanted.name, after)


async def wait_for_replicas(
    js: JetStreamContext, stream: str, replicas: int, timeout_s: float = REPLICAS_WAIT_S
) -> None:
    """Until the stream has a leader and ``replicas - 1`` current followers: after a change of
    its replica count JetStream moves it, and it answers nothing meanwhile."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        with contextlib.suppress(nats.errors.TimeoutError, nats.js.errors.APIError):
            cluster = (await js.stream_info(stream)).cluster
            followers = [p for p in (cluster.replicas or []) if p.current] if cluster else []
            if replicas == 1 or (cluster and cluster.leader and len(followers) >= replicas - 1):
                return
        if loop.time() > deadline:
            log.warning("stream %s has not reached %d current replicas yet", stream, replicas)
            return
        await asyncio.sleep(0.1)


async def last_message(
    js: JetStreamContext, stream: str, subject: str, *, from_leader: bool = False
) -> RawStreamMsg | None:
    """The last message on ``subject``, or None (also when there is no such stream). A direct
    get, served by any replica, unless ``from_leader``: a follower may not have the newest yet,
    and a compare-and-set needs the sequence the leader checks against."""
    try:
        msg = await js.get_last_msg(stream, subject, direct=not from_leader)
    except (nats.js.errors.NotFoundError, nats.errors.NoRespondersError):
        return None
    return msg
