"""The monitor store's compare-and-set: what keeps a redelivered Async invocation to one final
record."""

from __future__ import annotations

import uuid

from nats.aio.client import Client

from bus.monitor import MonitorStore, ttl_seconds
from schemas.invocations import MonitorRecord


def record(ct: str, status: str) -> MonitorRecord:
    return MonitorRecord(
        invocation_id="inv-1",
        collection_topic=ct,
        service="123456789",
        revision=1,
        status=status,  # type: ignore[arg-type]
        started=1,
        invocation_type="Async",
    )


async def test_a_write_lands_only_over_the_sequence_it_expects(nc: Client) -> None:
    store = await MonitorStore.open(nc)
    ct = f"cas-{uuid.uuid4().hex[:8]}"
    first = await store.write_expecting(record(ct, "queued"), 60_000, 0)
    assert first is not None
    _, seq = first
    assert await store.write_expecting(record(ct, "running"), 60_000, 0) is None  # one exists
    assert await store.write_expecting(record(ct, "running"), 60_000, seq + 100) is None
    second = await store.write_expecting(record(ct, "succeeded"), 60_000, seq)
    assert second is not None and second[1] > seq
    current, at = await store.current(ct, "123456789", "inv-1")
    assert current is not None and current.status == "succeeded" and at == second[1]
    # The writer that lost the race sees the final record and stops.
    assert await store.write_expecting(record(ct, "failed"), 60_000, seq) is None


def test_ttls_are_whole_seconds_and_never_zero() -> None:
    assert ttl_seconds(1) == 1 and ttl_seconds(1000) == 1 and ttl_seconds(1001) == 2
