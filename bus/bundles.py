"""Content-addressed bundle storage in the JetStream Object Store: one object per digest."""

from __future__ import annotations

from typing import NamedTuple

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import ObjectStoreConfig, StorageType
from nats.js.object_store import ObjectStore

from bus import subjects
from bus.scan import scan_last_per_subject
from schemas.bundles import Bundle, bundle_digest, decode_bundle, encode_bundle
from schemas.codec import json_decoder


class EncodedBundle(NamedTuple):
    digest: str
    data: bytes


def encoded_bundle(bundle: Bundle) -> EncodedBundle:
    """The bundle's bytes and their address, known before anything is stored."""
    data = encode_bundle(bundle)
    return EncodedBundle(bundle_digest(data), data)


class BundleStore:
    def __init__(self, js: JetStreamContext, store: ObjectStore) -> None:
        self.js = js
        self.store = store

    @classmethod
    async def open(cls, js: JetStreamContext) -> BundleStore:
        try:
            store = await js.object_store(subjects.BUNDLES_BUCKET)
        except nats.js.errors.BucketNotFoundError:
            store = await js.create_object_store(
                subjects.BUNDLES_BUCKET,
                config=ObjectStoreConfig(storage=StorageType.FILE),
            )
        return cls(js, store)

    async def put(self, encoded: EncodedBundle) -> None:
        """Store the bundle unless the same bytes are already there."""
        if not await self.exists(encoded.digest):
            await self.store.put(encoded.digest, encoded.data)

    async def digests(self) -> set[str]:
        """Every stored bundle's digest (read from the object metadata, exactly once each)."""
        bucket = subjects.BUNDLES_BUCKET
        found: set[str] = set()
        async for data in scan_last_per_subject(self.js, f"OBJ_{bucket}", f"$O.{bucket}.M.>"):
            info = json_decoder.decode(data)
            if not info.get("deleted"):
                found.add(info["name"])
        return found

    async def exists(self, digest: str) -> bool:
        try:
            info = await self.store.get_info(digest)
        except nats.js.errors.ObjectNotFoundError:
            return False
        return not info.deleted

    async def get(self, digest: str) -> Bundle:
        result = await self.store.get(digest)
        data = result.data or b""
        if bundle_digest(data) != digest:
            raise ValueError(f"bundle {digest} is corrupt in the store")
        return decode_bundle(data)
