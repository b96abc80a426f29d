"""Asking the workers: who is there (ping), and can they load a revision (probe)."""

from __future__ import annotations

import asyncio
from typing import Any

import nats.errors
from nats.aio.client import Client

from bus import subjects
from schemas.codec import encode, json_decoder

PING_WAIT_S = 0.5


async def ping_workers(nc: Client, wait_s: float = PING_WAIT_S) -> list[dict[str, Any]]:
    """Every worker's answer to a ping (id, isolation level, runtimes) within ``wait_s``."""
    return await _gather(nc, subjects.WORKER_PING, b"", wait_s, quiet_s=None)


async def sync_workers(nc: Client, ct: str, ft: str, seq: int, record: bytes) -> int:
    """Hand a just-written function record to every worker and wait for their acks, so the next
    invocation anywhere uses it (the KV watch would bring it a few milliseconds later)."""
    body = encode({"collection_topic": ct, "service": ft, "seq": seq}) + b"\n" + record
    return len(await _gather(nc, subjects.WORKER_SYNC, body, PING_WAIT_S, quiet_s=0.05))


async def _gather(
    nc: Client, subject: str, body: bytes, wait_s: float, quiet_s: float | None
) -> list[dict[str, Any]]:
    """Replies to one broadcast: until ``wait_s``, or ``quiet_s`` after the last reply."""
    inbox = nc.new_inbox()
    replies: list[dict[str, Any]] = []
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
            if not msg.data:  # a status message (no responders), not a worker's answer
                continue
            replies.append(json_decoder.decode(msg.data))
    finally:
        await sub.unsubscribe()
    return replies


async def probe_revision(
    nc: Client, ct: str, ft: str, number: int, timeout_s: float
) -> list[dict[str, str]]:
    """Have one worker load the revision's handler in its sandbox; the blockers it found."""
    body = encode({"collection_topic": ct, "service": ft, "revision": number})
    try:
        reply = await nc.request(subjects.WORKER_PROBE, body, timeout=timeout_s)
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
        return [{"reason": "not_checked", "message": "no worker answered the load check"}]
    blockers: list[dict[str, str]] = json_decoder.decode(reply.data)["blockers"]
    return blockers
