"""Content-addressed bundle storage in the JetStream Object Store: one object per digest."""

from __future__ import annotations

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import ObjectStoreConfig, StorageType
from nats.js.object_store import ObjectStore

from bus import subjects
from schemas.bundles import Bundle, bundle_digest, decode_bundle, encode_bundle


class BundleStore:
    def __init__(self, store: ObjectStore) -> None:
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
        return cls(store)

    async def put(self, bundle: Bundle) -> str:
        """Store ``bundle`` unless the same bytes are already there; returns its digest."""
        encoded = encode_bundle(bundle)
        digest = bundle_digest(encoded)
        if not await self.exists(digest):
            await self.store.put(digest, encoded)
        return digest

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
