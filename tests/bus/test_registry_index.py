"""Listings and the bundle budget read the registry index a view feeds: they see what a scan
sees, including writes another process made a moment before (no stale answer)."""

from __future__ import annotations

import uuid

from nats.aio.client import Client

from bus.registry import Registry
from bus.registry_index import RegistryIndex
from bus.registry_view import RegistryView
from schemas.codec import encode
from schemas.functions import AssetMeta, FunctionRecord, FunctionSchema, MonitorConfig, Revision


def revision(number: int, bundle: str, size: int) -> Revision:
    return Revision(
        number=number,
        created=1,
        runtime="nodejs",
        handler="index.handler",
        timeout=1000,
        read_only_fs=True,
        env_vars=[],
        size="128MB",
        memory_mb=128,
        schema=FunctionSchema(),
        bundle=bundle,
        assets=[AssetMeta(asset_name="index.js", asset_type="", link=False, size=size)],
    )


def record(ct: str, ft: str, created: int) -> FunctionRecord:
    return FunctionRecord(
        collection_topic=ct,
        service=ft,
        name=f"fn-{ft}",
        description="",
        monitor_config=MonitorConfig(),
        created=created,
        modified=created,
        latest_revision=1,
        aliases={"production": 1},
    )


def test_the_index_orders_like_the_listing_and_counts_shared_bundles_once() -> None:
    index = RegistryIndex()
    index.put_function("b", "2", record("b", "2", 5))
    index.put_function("a", "9", record("a", "9", 7))
    index.put_function("a", "1", record("a", "1", 7))
    index.put_function("a", "5", record("a", "5", 3))
    assert [(r.collection_topic, r.service) for r in index.functions()] == [
        ("a", "5"),
        ("a", "1"),
        ("a", "9"),
        ("b", "2"),
    ]
    index.drop_function("a", "1")
    assert [r.service for r in index.functions("a")] == ["5", "9"]
    index.put_revision("a", "5", revision(1, "d1", 10))
    index.put_revision("a", "9", revision(1, "d1", 10))
    index.put_revision("a", "9", revision(2, "d2", 20))
    assert index.collection_bundles("a") == {"d1": 10, "d2": 20}
    index.drop_revision("a", "9", 1)
    assert index.collection_bundles("a") == {"d1": 10, "d2": 20}
    index.drop_revision("a", "5", 1)
    index.drop_revision("a", "9", 2)
    assert index.collection_bundles("a") == {}


async def test_listings_see_another_processes_writes_at_once(nc: Client) -> None:
    js = nc.jetstream()
    ours = await Registry.open(js, nc.max_payload)
    view = RegistryView(ours)
    await view.start()
    theirs = await Registry.open(js, nc.max_payload)  # no view: it always scans
    ct = f"idx{uuid.uuid4().hex[:8]}"
    try:
        assert ours.index.live and not theirs.index.live
        for i in range(20):
            ft = f"{100_000_000 + i}"
            await theirs.kv.put(f"rev.{ct}.{ft}.1", encode(revision(1, f"d{i % 3}", 10 + i % 3)))
            await theirs.create_function(record(ct, ft, i))
            assert await ours.list_functions(ct) == await theirs.list_functions(ct)
            assert await ours.collection_bundles(ct) == await theirs.collection_bundles(ct)
        gone = record(ct, "100000004", 4)
        found = await theirs.get_function_entry(ct, gone.service)
        assert found is not None
        await theirs.delete_function(gone, found[0])
        listed = await ours.list_functions(ct)
        assert listed == await theirs.list_functions(ct) and len(listed) == 19
        assert ours.index.functions(ct) == listed  # what the listing read
        assert await ours.list_functions() == await theirs.list_functions()
    finally:
        await view.close()
