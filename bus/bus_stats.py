"""What the bus holds, read from JetStream's API when the API is scraped: the Async queue's
depth and the age of its oldest message (Lambda's iterator age), its consumers' redeliveries,
and each collection's monitor and dead-letter streams."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client

from bus import subjects
from schemas.codec import encode, json_decoder, unix_seconds


@dataclass
class BusStats:
    async_messages: int = 0
    async_oldest_age_s: float = 0.0
    async_redelivered: int = 0  # delivered more than once and not yet acked, over all consumers
    async_ack_pending: int = 0
    monitor_bytes: dict[str, int] = field(default_factory=dict)  # per collection
    monitor_messages: dict[str, int] = field(default_factory=dict)
    dead_letters: dict[str, int] = field(default_factory=dict)


async def read_bus_stats(nc: Client, timeout_s: float) -> BusStats:
    """Raises what the requests raise (a timeout, no responders): the caller reports it."""
    stats = BusStats()
    now = time.time()
    for info in await _pages(nc, subjects.JS_STREAM_LIST, "streams", timeout_s):
        name: str = info["config"]["name"]
        state: dict[str, Any] = info.get("state", {})
        if name == subjects.ASYNC_STREAM:
            stats.async_messages = state.get("messages", 0)
            first = unix_seconds(state.get("first_ts", ""))
            if stats.async_messages and first:
                stats.async_oldest_age_s = max(0.0, now - first)
        elif name.startswith(subjects.MONITOR_STREAM_PREFIX):
            ct = name.removeprefix(subjects.MONITOR_STREAM_PREFIX)
            stats.monitor_bytes[ct] = state.get("bytes", 0)
            stats.monitor_messages[ct] = state.get("messages", 0)
        elif name.startswith(subjects.DEAD_LETTER_STREAM_PREFIX):
            ct = name.removeprefix(subjects.DEAD_LETTER_STREAM_PREFIX)
            stats.dead_letters[ct] = state.get("messages", 0)
    consumers = subjects.js_consumer_list(subjects.ASYNC_STREAM)
    for info in await _pages(nc, consumers, "consumers", timeout_s):
        stats.async_redelivered += info.get("num_redelivered", 0)
        stats.async_ack_pending += info.get("num_ack_pending", 0)
    return stats


async def _pages(nc: Client, subject: str, key: str, timeout_s: float) -> list[dict[str, Any]]:
    """Every item of a paged JetStream list."""
    items: list[dict[str, Any]] = []
    while True:
        reply = await nc.request(subject, encode({"offset": len(items)}), timeout=timeout_s)
        page = json_decoder.decode(reply.data)
        if "error" in page:
            if page["error"].get("code") == 404:  # no such stream (yet)
                return items
            raise RuntimeError(f"{subject}: {page['error'].get('description', page['error'])}")
        found = page.get(key) or []
        items += found
        if not found or len(items) >= page.get("total", 0):
            return items
