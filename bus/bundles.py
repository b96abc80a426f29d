"""Content-addressed bundle storage in the JetStream Object Store: one object per digest."""

from __future__ import annotations

import contextlib
import time
from typing import NamedTuple

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import ObjectStoreConfig, StorageType
from nats.js.object_store import OBJ_CHUNKS_PRE_TEMPLATE, ObjectStore

from bus import subjects
from bus.scan import scan_last_per_subject
from bus.streams import ensure_replicas
from schemas.bundles import Bundle, bundle_digest, decode_bundle, encode_bundle
from schemas.codec import json_decoder, unix_seconds


class EncodedBundle(NamedTuple):
    """A bundle encoded for the store, with the digest it is stored under."""

    digest: str
    data: bytes


def encoded_bundle(bundle: Bundle) -> EncodedBundle:
    """The bundle's bytes and their address, known before anything is stored."""
    data = encode_bundle(bundle)
    return EncodedBundle(bundle_digest(data), data)


class BundleStore:
    """Bundles in the Object Store, one object per content digest; garbage-collects unused ones."""

    def __init__(self, js: JetStreamContext, store: ObjectStore) -> None:
        self.js = js
        self.store = store

    @classmethod
    async def open(cls, js: JetStreamContext, *, replicas: int = 1) -> BundleStore:
        try:
            store = await js.object_store(subjects.BUNDLES_BUCKET)
        except nats.js.errors.BucketNotFoundError:
            store = await js.create_object_store(
                subjects.BUNDLES_BUCKET,
                config=ObjectStoreConfig(storage=StorageType.FILE, replicas=replicas),
            )
        else:
            await ensure_replicas(js, f"OBJ_{subjects.BUNDLES_BUCKET}", replicas)
        return cls(js, store)

    async def put(self, encoded: EncodedBundle) -> None:
        """Store the bundle unless the same bytes are already there."""
        if not await self.exists(encoded.digest):
            await self.store.put(encoded.digest, encoded.data)

    async def digests(self) -> set[str]:
        """Every stored bundle's digest (read from the object metadata, exactly once each)."""
        return set(await self._stored())

    async def _stored(self) -> dict[str, float]:
        """Digest -> when it was stored (unix seconds)."""
        bucket = subjects.BUNDLES_BUCKET
        found: dict[str, float] = {}
        async for data in scan_last_per_subject(self.js, f"OBJ_{bucket}", f"$O.{bucket}.M.>"):
            info = json_decoder.decode(data)
            if not info.get("deleted"):
                found[info["name"]] = unix_seconds(info.get("mtime", ""))
        return found

    async def collect(self, in_use: set[str], grace_s: float) -> set[str]:
        """Delete bundles not in ``in_use`` that were stored more than ``grace_s`` ago."""
        cutoff = time.time() - grace_s
        stored = await self._stored()
        doomed = {d for d, at in stored.items() if d not in in_use and at <= cutoff}
        for digest in doomed:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await self.store.delete(digest)
        return doomed

    async def exists(self, digest: str) -> bool:
        try:
            info = await self.store.get_info(digest)
        except nats.js.errors.ObjectNotFoundError:
            return False
        return not info.deleted

    async def get(self, digest: str) -> Bundle:
        data = await self._one_chunk(digest)
        if data is None:
            data = (await self.store.get(digest)).data or b""
        if bundle_digest(data) != digest:
            raise ValueError(f"bundle {digest} is corrupt in the store")
        return decode_bundle(data)

    async def _one_chunk(self, digest: str) -> bytes | None:
        """A bundle stored in one chunk (most are: up to 128 KiB), read with one message get
        after its info, where the Object Store's own read makes a consumer for the chunks; None
        for any other (read the usual way). The caller checks the digest either way."""
        info = await self.store.get_info(digest)
        if info.is_link() or info.chunks != 1 or not info.nuid:
            return None
        bucket = subjects.BUNDLES_BUCKET
        chunk = OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=bucket, obj=info.nuid)
        msg = await self.js.get_last_msg(f"OBJ_{bucket}", chunk)
        return msg.data or b""
