"""Each collection has its own budget for monitor records and dead letters: filling one drops
that collection's own oldest, never another collection's."""

from __future__ import annotations

import os
import uuid
from typing import Any

import msgspec
import nats.js.errors
import pytest
from nats.aio.client import Client

from bus import subjects
from bus.collection_streams import CollectionStreams
from bus.dead_letters import DeadLetters
from bus.monitor import MonitorStore, monitor_stream_config
from executor.settings import MIN_COLLECTION_BUDGET
from schemas.errors import StorageFull
from schemas.invocations import DeadLetter, MonitorRecord
from tests.helpers import Stack, function_body, second_api

BIG = msgspec.Raw(b'"' + b"x" * (512 * 1024) + b'"')
FLOOD = 2 * MIN_COLLECTION_BUDGET // (512 * 1024)  # twice the budget


def record(ct: str, invocation_id: str) -> MonitorRecord:
    return MonitorRecord(
        invocation_id=invocation_id,
        collection_topic=ct,
        service="123456789",
        revision=1,
        status="succeeded",
        started=1,
        output=BIG,
    )


def letter(ct: str, invocation_id: str) -> DeadLetter:
    return DeadLetter(
        invocation_id=invocation_id,
        collection_topic=ct,
        service="123456789",
        attempts=3,
        error_code="function_error",
        error_message="boom",
        failed_at=1,
        payload=BIG,
    )


def collections() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"quiet-{tag}", f"noisy-{tag}"


async def test_a_collection_filling_its_record_budget_drops_only_its_own_oldest(
    nc: Client,
) -> None:
    js = nc.jetstream()
    store = await MonitorStore.open(nc, max_bytes=MIN_COLLECTION_BUDGET)
    quiet, noisy = collections()
    written = await store.write_expecting(record(quiet, "keep"), 86_400_000, 0)
    assert written is not None
    for i in range(FLOOD):
        await store.write_expecting(record(noisy, f"n{i}"), 86_400_000, 0)

    assert await store.get(quiet, "123456789", "keep") is not None
    assert await store.get(noisy, "123456789", "n0") is None  # its own oldest went
    assert await store.get(noisy, "123456789", f"n{FLOOD - 1}") is not None
    page = await store.list(noisy, "123456789", limit=1)
    assert page.complete and 0 < page.total < FLOOD
    info = await js.stream_info(subjects.monitor_stream(noisy))
    assert info.state.bytes <= MIN_COLLECTION_BUDGET


async def test_a_collection_filling_its_dead_letter_budget_drops_only_its_own_oldest(
    nc: Client,
) -> None:
    store = await DeadLetters.open(
        nc.jetstream(), nc.max_payload, max_age_s=3600, max_bytes=MIN_COLLECTION_BUDGET
    )
    quiet, noisy = collections()
    await store.add(letter(quiet, "keep"))
    for i in range(FLOOD):
        await store.add(letter(noisy, f"n{i}"))

    kept = await store.get(quiet, "123456789", "keep")
    assert kept is not None and kept[0].payload == BIG
    assert await store.get(noisy, "123456789", "n0") is None
    assert await store.get(noisy, "123456789", f"n{FLOOD - 1}") is not None


async def test_reading_a_collection_that_never_wrote_finds_nothing(nc: Client) -> None:
    js = nc.jetstream()
    store = await MonitorStore.open(nc)
    letters = await DeadLetters.open(js, nc.max_payload, max_age_s=60, max_bytes=1 << 30)
    never, _ = collections()
    assert await store.get(never, "123456789", "x") is None
    page = await store.list(never, "123456789")
    assert page.items == [] and page.total == 0 and page.complete
    assert await letters.get(never, "123456789", "x") is None
    assert (await letters.list(never, "123456789")).total == 0
    await letters.remove_function(never, "123456789")  # nothing to remove is not an error


async def test_a_collection_cannot_store_bundles_past_its_budget(stack: Stack) -> None:
    ct = f"bundles-{uuid.uuid4().hex[:8]}"
    mib = 1024 * 1024

    def body(seed: str) -> dict[str, Any]:
        padding = os.urandom(900 * 1024)  # incompressible, so the decoded size is what counts
        files: dict[str, str | bytes] = {
            "index.js": f"exports.handler = async () => '{seed}';",
            "pad.bin": padding,
        }
        return function_body(files, collection=ct)

    async with second_api(
        stack, max_bundle_bytes=1 * mib, collection_bundle_max_bytes=2 * mib
    ) as http:
        first = await http.post("/compute/functions", json=body("a"))
        second = await http.post("/compute/functions", json=body("b"))
        assert (first.status_code, second.status_code) == (201, 201), second.text
        third = await http.post("/compute/functions", json=body("c"))
        assert third.status_code == 413, third.text
        error = third.json()
        assert error["code"] == "payload_too_large"
        assert "COMPUTEBUS_COLLECTION_BUNDLE_MAX_BYTES" in error["error"]
        assert str(2 * mib) in error["error"]
        same = first.json()["body"]
        await http.delete(f"/compute/functions/{ct}/{same['compute_asset']['service']}")
        again = await http.post("/compute/functions", json=body("c"))
        assert again.status_code == 201, again.text
        # Another collection is not held to this one's bundles.
        elsewhere = await http.post("/compute/functions", json=body("d"))
        assert elsewhere.status_code == 413  # same collection still full
        other = body("e")
        other["compute_asset"]["collection_topic"] = f"{ct}-other"
        assert (await http.post("/compute/functions", json=other)).status_code == 201


async def test_a_budget_the_bus_cannot_set_aside_is_a_clear_507(nc: Client) -> None:
    js = nc.jetstream()
    ct, _ = collections()
    huge = CollectionStreams(js, lambda c: monitor_stream_config(c, 1 << 60))
    with pytest.raises(StorageFull) as refused:
        await huge.ready(ct)
    assert refused.value.status == 507
    assert "COMPUTEBUS_MONITOR_MAX_BYTES" in refused.value.message
    with pytest.raises(nats.js.errors.NotFoundError):
        await js.stream_info(subjects.monitor_stream(ct))  # nothing half made
