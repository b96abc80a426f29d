"""Asking the workers: who is there (ping), and can they load a revision (probe)."""

from __future__ import annotations

import asyncio
import logging
from typing import TypeVar

import msgspec
import nats.errors
from nats.aio.client import Client

from bus import subjects
from schemas.codec import decoder_for, encode
from schemas.control import (
    NOT_CHECKED,
    Blocker,
    ProbeReply,
    ProbeRequest,
    RegistrySync,
    SyncAck,
    WorkerInfo,
)

log = logging.getLogger("computebus")

T = TypeVar("T")

PING_WAIT_S = 0.5


async def ping_workers(nc: Client, wait_s: float = PING_WAIT_S) -> list[WorkerInfo]:
    """Every worker's answer to a ping (id, isolation level, runtimes) within ``wait_s``."""
    return await _gather(nc, subjects.WORKER_PING, b"", WorkerInfo, wait_s, quiet_s=None)


async def sync_workers(nc: Client, ct: str, ft: str, seq: int, record: bytes) -> int:
    """Hand a just-written function record to every worker and wait for their acks, so the next
    invocation anywhere uses it (the KV watch would bring it a few milliseconds later)."""
    body = encode(
        RegistrySync(collection_topic=ct, service=ft, seq=seq, record=msgspec.Raw(record))
    )
    acks = await _gather(nc, subjects.WORKER_SYNC, body, SyncAck, PING_WAIT_S, quiet_s=0.05)
    return len(acks)


async def count_answers(nc: Client, subject: str, wait_s: float = PING_WAIT_S) -> int:
    """How many answer a broadcast on ``subject`` (the API processes answer ``API_PING``)."""
    return len(await _replies(nc, subject, b"", wait_s, quiet_s=0.05))


async def _gather(
    nc: Client, subject: str, body: bytes, kind: type[T], wait_s: float, quiet_s: float | None
) -> list[T]:
    """The replies to one broadcast, read as ``kind`` (an unreadable one is skipped)."""
    decoder = decoder_for(kind)
    found: list[T] = []
    for data in await _replies(nc, subject, body, wait_s, quiet_s):
        try:
            found.append(decoder.decode(data))
        except msgspec.DecodeError as exc:
            log.warning("ignoring an unreadable answer on %s: %s", subject, exc)
    return found


async def _replies(
    nc: Client, subject: str, body: bytes, wait_s: float, quiet_s: float | None
) -> list[bytes]:
    """Replies to one broadcast: until ``wait_s``, or ``quiet_s`` after the last reply."""
    inbox = nc.new_inbox()
    replies: list[bytes] = []
    sub = await nc.subscribe(inbox)
    try:
        await nc.publish(subject, body, reply=inbox)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while (left := deadline - loop.time()) > 0:
            if replies and quiet_s is not None:
                left = min(left, quiet_s)
            try:
                msg = await sub.next_msg(timeout=left)
            except nats.errors.TimeoutError:
                break
            if msg.data:  # else a status message (no responders), not an answer
                replies.append(msg.data)
    finally:
        await sub.unsubscribe()
    return replies


async def probe_revision(
    nc: Client, ct: str, ft: str, number: int, timeout_s: float
) -> list[Blocker]:
    """Have one worker load the revision's handler in its sandbox; the blockers it found."""
    body = encode(ProbeRequest(collection_topic=ct, service=ft, revision=number))
    try:
        reply = await nc.request(subjects.WORKER_PROBE, body, timeout=timeout_s)
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
        return [Blocker(reason=NOT_CHECKED, message="no worker answered the load check")]
    return decoder_for(ProbeReply).decode(reply.data).blockers
