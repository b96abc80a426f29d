"""A scan of the last message per subject yields each subject once, even when subjects are
written again while it runs."""

from __future__ import annotations

import uuid

from nats.aio.client import Client
from nats.js.api import StreamConfig

from bus.scan import scan_last_per_subject


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
