"""A local copy of the registry, fed by a KV watch, so the hot path never waits on a lookup.

Every entry remembers the KV sequence it came from; a direct read (on a miss) never overwrites a
newer update from the watch. Revisions are immutable, so they are cached for as long as the
function exists.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bus import subjects
from bus.kv import KvFollower
from bus.registry import Registry, name_hash
from schemas import ids
from schemas.codec import decoder_for
from schemas.errors import FunctionNotFound, NotFound
from schemas.functions import FunctionRecord, Revision
from schemas.ids import DEFAULT_ALIAS

log = logging.getLogger("computebus.registry")

FunctionKey = tuple[str, str]


class RegistryView:
    """A watch-fed local copy of the registry for hot-path lookups; misses read through."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._functions: dict[FunctionKey, tuple[int, FunctionRecord]] = {}
        self._revisions: dict[tuple[str, str, int], Revision] = {}
        self._names: dict[tuple[str, str], str] = {}  # (ct, name hash) -> service id
        self._follower: KvFollower | None = None
        self.on_function_gone: list[Callable[[str, str], None]] = []
        self.on_function_changed: list[Callable[[str, str, FunctionRecord], None]] = []
        self.on_revision_gone: list[Callable[[str, str, int], None]] = []

    async def start(self) -> None:
        self._follower = KvFollower(self.registry.kv, subjects.FUNCTIONS_BUCKET, self._apply)
        await self._follower.start()
        self.registry.index.live = True

    async def close(self) -> None:
        self.registry.index.live = False
        if self._follower is not None:
            await self._follower.close()

    def _apply(self, key: str, value: bytes | None, seq: int) -> None:
        try:
            self._take(key, value, seq)
        finally:
            self.registry.index.saw(seq)

    def _take(self, key: str, value: bytes | None, seq: int) -> None:
        index = self.registry.index
        parts = key.split(".")
        deleted = value is None
        if parts[0] == "fn" and len(parts) == 3:
            fkey = (parts[1], parts[2])
            if deleted:
                index.drop_function(*fkey)
                self._functions.pop(fkey, None)
                for callback in self.on_function_gone:
                    callback(*fkey)
            else:
                assert value is not None
                record = decoder_for(FunctionRecord).decode(value)
                index.put_function(*fkey, record)
                self._remember(fkey, seq, record)
        elif parts[0] == "rev" and len(parts) == 4:
            rkey = (parts[1], parts[2], int(parts[3]))
            if deleted:
                index.drop_revision(*rkey)
                self._revisions.pop(rkey, None)
                for gone in self.on_revision_gone:
                    gone(*rkey)
            elif value is not None:
                revision = decoder_for(Revision).decode(value)
                index.put_revision(rkey[0], rkey[1], revision)
                self._revisions[rkey] = revision
        elif parts[0] == "name" and len(parts) == 3:
            if deleted:
                self._names.pop((parts[1], parts[2]), None)
            else:
                assert value is not None
                self._names[(parts[1], parts[2])] = value.decode()

    def _remember(self, key: FunctionKey, seq: int, record: FunctionRecord) -> None:
        known = self._functions.get(key)
        if known is None or known[0] < seq:  # the same sequence again (sync, then watch) is no news
            self._functions[key] = (seq, record)
            for callback in self.on_function_changed:
                callback(key[0], key[1], record)

    def remember(self, ct: str, ft: str, seq: int, record: FunctionRecord) -> None:
        """Take a record this process just wrote (the watch brings it a moment later)."""
        self._remember((ct, ft), seq, record)

    def forget_function(self, ct: str, ft: str) -> None:
        """Drop a function this process just deleted, and its revisions."""
        self._functions.pop((ct, ft), None)
        for key in [k for k in self._revisions if k[:2] == (ct, ft)]:
            self._revisions.pop(key, None)

    async def function(self, ct: str, ft: str) -> FunctionRecord | None:
        known = self._functions.get((ct, ft))
        if known is not None:
            return known[1]
        found = await self.registry.get_function_entry(ct, ft)
        if found is None:
            return None
        seq, record = found
        self._remember((ct, ft), seq, record)
        return record

    async def service_named(self, ct: str, name: str) -> str | None:
        """The service id of the function called ``name`` in ``ct``, or None."""
        key = (ct, name_hash(name))
        service = self._names.get(key)
        if service is None:
            service = await self.registry.service_named(ct, name)
        return service

    async def service_of(self, ct: str, ref: str) -> str | None:
        """``ref`` as a service id: one already (nine digits win), or a function's name."""
        return ref if ids.SERVICE_ID.fullmatch(ref) else await self.service_named(ct, ref)

    async def revision(self, ct: str, ft: str, number: int) -> Revision | None:
        rev = self._revisions.get((ct, ft, number))
        if rev is None:
            rev = await self.registry.get_revision(ct, ft, number)
            if rev is not None:
                self._revisions[(ct, ft, number)] = rev
        return rev

    async def resolve(
        self, ct: str, ft: str, *, alias: str | None = None, revision: int | None = None
    ) -> tuple[FunctionRecord, Revision]:
        """The function and the revision an invocation runs (alias ``production`` by default)."""
        record = await self.function(ct, ft)
        if record is None:
            raise FunctionNotFound(f"function {ct}/{ft} does not exist")
        if revision is None:
            name = alias or DEFAULT_ALIAS
            if name not in record.aliases:
                raise NotFound(f"function {ct}/{ft} has no alias {name!r}")
            revision = record.aliases[name]
        rev = await self.revision(ct, ft, revision)
        if rev is None:
            raise NotFound(f"function {ct}/{ft} has no revision {revision}")
        return record, rev

    def cached_function(self, ct: str, ft: str) -> FunctionRecord | None:
        """The record if this process has it now (no bus round trip: for admission checks)."""
        known = self._functions.get((ct, ft))
        return known[1] if known is not None else None

    def cached_revision(self, ct: str, ft: str, number: int) -> Revision | None:
        """The revision if this process has it now (the watch brings every one)."""
        return self._revisions.get((ct, ft, number))

    def function_count(self) -> int:
        return len(self._functions)

    def cached_functions(self) -> list[FunctionRecord]:
        return [record for _, record in self._functions.values()]
