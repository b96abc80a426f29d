"""The bundle store reads back what it stored: a bundle in one chunk (read with one message get)
and one over many chunks (the Object Store's own read)."""

from __future__ import annotations

import os

from nats.aio.client import Client

from bus.bundles import BundleStore, encoded_bundle
from schemas.bundles import Bundle, BundleFile


async def test_small_and_many_chunk_bundles_read_back_as_stored(nc: Client) -> None:
    store = await BundleStore.open(nc.jetstream())
    small = Bundle(files=[BundleFile(name="index.py", kind="file", data=os.urandom(64))])
    big = Bundle(files=[BundleFile(name="data.bin", kind="file", data=os.urandom(600_000))])
    for bundle in (small, big):
        encoded = encoded_bundle(bundle)
        await store.put(encoded)
        assert await store.get(encoded.digest) == bundle
    assert await store._one_chunk(encoded_bundle(small).digest) is not None
    assert await store._one_chunk(encoded_bundle(big).digest) is None  # read the usual way
