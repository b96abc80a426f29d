"""The function registry: function records, their immutable revisions and a name index, in KV.

Keys (see ``bus.subjects``): ``fn.<ct>.<ft>`` holds the ``FunctionRecord``, ``rev.<ct>.<ft>.<n>``
each ``Revision``, ``name.<ct>.<hash>`` reserves a name inside a collection. Writes that must not
race use KV's create (only if absent) and update (only at a known revision).
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets

import msgspec
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from bus import subjects
from bus.kv import open_bucket
from bus.registry_index import RegistryIndex
from bus.scan import scan_last_per_subject
from schemas.codec import decoder_for, encode
from schemas.errors import FunctionExists, InternalError, PayloadTooLarge
from schemas.functions import FunctionRecord, Revision

_ID_ATTEMPTS = 20
_KV_HEADROOM = 1024  # subject and headers of a KV message
# How long a listing waits for the index to catch up with the stream before it scans instead.
_INDEX_WAIT_S = 0.5


def name_hash(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:40]


def new_service_id() -> str:
    return str(100_000_000 + secrets.randbelow(900_000_000))


class Registry:
    """The function registry in JetStream KV: records, immutable revisions and the name index."""

    def __init__(self, js: JetStreamContext, kv: KeyValue, max_payload: int) -> None:
        self.js = js
        self.kv = kv
        self._max_record = max_payload - _KV_HEADROOM
        self.index = RegistryIndex()  # fed by this process's RegistryView, when it has one

    @classmethod
    async def open(cls, js: JetStreamContext, max_payload: int, *, replicas: int = 1) -> Registry:
        kv = await open_bucket(js, subjects.FUNCTIONS_BUCKET, history=8, replicas=replicas)
        return cls(js, kv, max_payload)

    def _encode(self, record: Revision | FunctionRecord) -> bytes:
        """The record as stored; one the bus cannot carry is refused (413), not retried."""
        data = encode(record)
        if len(data) > self._max_record:
            what = "revision" if isinstance(record, Revision) else "function"
            raise PayloadTooLarge(
                f"the {what} record would be {len(data)} bytes, over the {self._max_record}-byte"
                " limit of one message on the bus (fewer or shorter asset names, env_vars or"
                " schemas)",
                [{"path": "/", "message": f"at most {self._max_record} bytes once stored"}],
            )
        return data

    async def create_first_revision(self, ct: str, revision: Revision) -> str:
        """Store revision 1 under a fresh service id; the create also claims the id."""
        for _ in range(_ID_ATTEMPTS):
            service = new_service_id()
            try:
                await self.kv.create(subjects.revision_key(ct, service, 1), self._encode(revision))
            except nats.js.errors.KeyWrongLastSequenceError:
                continue
            return service
        raise InternalError("could not allocate a free service id; try again")

    async def add_revision(self, ct: str, ft: str, revision: Revision, first: int) -> Revision:
        """Store ``revision`` under the lowest free number from ``first`` (KV create decides
        races: two writers never get one number) and return it as stored."""
        number = max(first, 2)
        while True:
            stored = msgspec.structs.replace(revision, number=number)
            try:
                await self.kv.create(subjects.revision_key(ct, ft, number), self._encode(stored))
            except nats.js.errors.KeyWrongLastSequenceError:
                number += 1
                continue
            return stored

    async def update_function(self, record: FunctionRecord, seq: int) -> int:
        """Write ``record`` only if it is still at KV sequence ``seq``; returns the new one.
        Raises ``KeyWrongLastSequenceError`` when someone wrote in between."""
        key = subjects.function_key(record.collection_topic, record.service)
        return await self.kv.update(key, self._encode(record), last=seq)

    async def list_revisions(self, ct: str, ft: str) -> list[Revision]:
        decode = decoder_for(Revision).decode
        keys = subjects.kv_subject(subjects.revision_key_filter(ct, ft))
        scan = scan_last_per_subject(self.js, subjects.FUNCTIONS_STREAM, keys)
        found = [decode(data) async for data in scan]
        return sorted(found, key=lambda r: r.number)

    async def _index_current(self) -> bool:
        """Whether the index holds every write the stream has now (else the caller scans)."""
        if not self.index.live:
            return False
        try:
            info = await self.js.stream_info(subjects.FUNCTIONS_STREAM)
        except nats.js.errors.NotFoundError:
            return False
        return await self.index.reached(info.state.last_seq, _INDEX_WAIT_S)

    async def collection_bundles(self, ct: str) -> dict[str, int]:
        """The bundles the collection's revisions use, each with its decoded size."""
        if await self._index_current():
            return self.index.collection_bundles(ct)
        decode = decoder_for(Revision).decode
        keys = subjects.kv_subject(subjects.revision_key_filter(ct))
        found: dict[str, int] = {}
        async for data in scan_last_per_subject(self.js, subjects.FUNCTIONS_STREAM, keys):
            revision = decode(data)
            found[revision.bundle] = sum(asset.size for asset in revision.assets)
        return found

    async def bundles_in_use(self) -> set[str]:
        """The bundle digest of every stored revision of every function."""
        decode = decoder_for(Revision).decode
        keys = subjects.kv_subject(subjects.revision_key_filter())
        scan = scan_last_per_subject(self.js, subjects.FUNCTIONS_STREAM, keys)
        return {decode(data).bundle async for data in scan}

    async def release_name(self, ct: str, name: str) -> None:
        with contextlib.suppress(nats.js.errors.Error):
            await self.kv.purge(subjects.name_key(ct, name_hash(name)))

    async def delete_function(self, record: FunctionRecord, seq: int) -> list[Revision]:
        """Remove the record (only if unchanged since ``seq``), its name and its revisions."""
        ct, ft = record.collection_topic, record.service
        await self.kv.delete(subjects.function_key(ct, ft), last=seq)
        await self.release_name(ct, record.name)
        revisions = await self.list_revisions(ct, ft)
        await self.forget([subjects.revision_key(ct, ft, r.number) for r in revisions])
        return revisions

    async def service_named(self, ct: str, name: str) -> str | None:
        try:
            entry = await self.kv.get(subjects.name_key(ct, name_hash(name)))
        except nats.js.errors.KeyNotFoundError:
            return None
        return entry.value.decode() if entry.value else None

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
            subjects.function_key(record.collection_topic, record.service), self._encode(record)
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
        """By collection, then created, then service id."""
        if await self._index_current():
            return self.index.functions(ct)
        decode = decoder_for(FunctionRecord).decode
        keys = subjects.kv_subject(subjects.function_key_filter(ct or "*"))
        scan = scan_last_per_subject(self.js, subjects.FUNCTIONS_STREAM, keys)
        found = [decode(data) async for data in scan]
        found.sort(key=lambda r: (r.collection_topic, r.created, r.service))
        return found
