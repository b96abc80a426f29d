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
    inbox = nc.new_inbox()
    replies: list[dict[str, Any]] = []
    sub = await nc.subscribe(inbox)
    try:
        await nc.publish(subjects.WORKER_PING, b"", reply=inbox)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while (left := deadline - loop.time()) > 0:
            try:
                msg = await sub.next_msg(timeout=left)
            except nats.errors.TimeoutError:
                break
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
