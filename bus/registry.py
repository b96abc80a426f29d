"""The function registry: function records, their immutable revisions and a name index, in KV.

Keys (see ``bus.subjects``): ``fn.<ct>.<ft>`` holds the ``FunctionRecord``, ``rev.<ct>.<ft>.<n>``
each ``Revision``, ``name.<ct>.<hash>`` reserves a name inside a collection. Writes that must not
race use KV's create (only if absent) and update (only at a known revision).
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from bus import subjects
from bus.scan import scan_last_per_subject
from schemas.codec import decoder_for, encode
from schemas.errors import FunctionExists
from schemas.functions import FunctionRecord, Revision

_ID_ATTEMPTS = 20


def name_hash(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:40]


def new_service_id() -> str:
    return str(100_000_000 + secrets.randbelow(900_000_000))


class Registry:
    def __init__(self, js: JetStreamContext, kv: KeyValue) -> None:
        self.js = js
        self.kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext) -> Registry:
        try:
            kv = await js.key_value(subjects.FUNCTIONS_BUCKET)
        except nats.js.errors.BucketNotFoundError:
            kv = await js.create_key_value(
                KeyValueConfig(
                    bucket=subjects.FUNCTIONS_BUCKET, history=8, storage=StorageType.FILE
                )
            )
        return cls(js, kv)

    async def create_first_revision(self, ct: str, revision: Revision) -> str:
        """Store revision 1 under a fresh service id; the create also claims the id."""
        for _ in range(_ID_ATTEMPTS):
            service = new_service_id()
            try:
                await self.kv.create(subjects.revision_key(ct, service, 1), encode(revision))
            except nats.js.errors.KeyWrongLastSequenceError:
                continue
            return service
        raise RuntimeError("could not allocate a free service id")

    async def reserve_name(self, ct: str, name: str, service: str) -> None:
        try:
            await self.kv.create(subjects.name_key(ct, name_hash(name)), service.encode())
        except nats.js.errors.KeyWrongLastSequenceError:
            raise FunctionExists(
                f"a function named {name!r} already exists in collection {ct!r}",
                [{"path": "/name", "message": "already taken in this collection"}],
            ) from None

    async def forget(self, keys: list[str]) -> None:
        """Undo a half-done create: purge the keys it wrote."""
        for key in keys:
            with contextlib.suppress(nats.js.errors.Error):
                await self.kv.purge(key)

    async def create_function(self, record: FunctionRecord) -> int:
        return await self.kv.create(
            subjects.function_key(record.collection_topic, record.service), encode(record)
        )

    async def get_function(self, ct: str, ft: str) -> FunctionRecord | None:
        found = await self.get_function_entry(ct, ft)
        return found[1] if found else None

    async def get_function_entry(self, ct: str, ft: str) -> tuple[int, FunctionRecord] | None:
        """The record and the KV sequence it was stored at."""
        try:
            entry = await self.kv.get(subjects.function_key(ct, ft))
        except nats.js.errors.KeyNotFoundError:
            return None
        if not entry.value:
            return None
        return entry.revision or 0, decoder_for(FunctionRecord).decode(entry.value)

    async def get_revision(self, ct: str, ft: str, number: int) -> Revision | None:
        try:
            entry = await self.kv.get(subjects.revision_key(ct, ft, number))
        except nats.js.errors.KeyNotFoundError:
            return None
        return decoder_for(Revision).decode(entry.value) if entry.value else None

    async def list_functions(self, ct: str | None = None) -> list[FunctionRecord]:
        decode = decoder_for(FunctionRecord).decode
        keys = f"$KV.{subjects.FUNCTIONS_BUCKET}.{subjects.function_key_filter(ct or '*')}"
        stream = f"KV_{subjects.FUNCTIONS_BUCKET}"
        found = [decode(data) async for data in scan_last_per_subject(self.js, stream, keys)]
        found.sort(key=lambda r: (r.collection_topic, r.created, r.service))
        return found
