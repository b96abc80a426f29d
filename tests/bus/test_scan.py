"""A scan of the last message per subject yields each subject once, even when subjects are
written again while it runs; a scan from a start time reads only what was stored since."""

from __future__ import annotations

import asyncio
import time
import uuid

from nats.aio.client import Client
from nats.js.api import StreamConfig

from bus.scan import scan_last_per_subject, scan_stored_since


async def test_a_subject_written_again_during_a_scan_comes_once(nc: Client) -> None:
    name = f"SCAN_{uuid.uuid4().hex[:8]}"
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=name, subjects=[f"{name}.>"], max_msgs_per_subject=1))
    try:
        for i in range(600):  # more than one fetch batch
            await js.publish(f"{name}.{i}", f"old {i}".encode())
        seen: list[bytes] = []
        async for data in scan_last_per_subject(js, name, f"{name}.>"):
            seen.append(data)
            if len(seen) == 10:  # rewrite what was already read, while the scan goes on
                for i in range(10):
                    await js.publish(f"{name}.{i}", f"new {i}".encode())
        assert len(seen) == 600
        assert len(set(seen)) == 600
        assert seen[:3] == [b"old 0", b"old 1", b"old 2"]
    finally:
        await js.delete_stream(name)


async def test_a_scan_from_a_time_reads_only_what_was_stored_since(nc: Client) -> None:
    name = f"SCAN_{uuid.uuid4().hex[:8]}"
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=name, subjects=[f"{name}.>"], max_msgs_per_subject=1))
    try:
        for i in range(5):
            await js.publish(f"{name}.{i}", f"old {i}".encode())
        await asyncio.sleep(0.2)
        since = time.time()
        await js.publish(f"{name}.1", b"new 1")  # an old subject written again
        await js.publish(f"{name}.9", b"new 9")
        seen = [data async for data in scan_stored_since(js, name, f"{name}.>", since, budget_s=5)]
        assert seen == [b"new 1", b"new 9"]
        later = [d async for d in scan_stored_since(js, name, f"{name}.>", time.time(), budget_s=5)]
        assert later == []
        consumers = await js.consumers_info(name)
        assert consumers == []  # each scan deleted its consumer
    finally:
        await js.delete_stream(name)
