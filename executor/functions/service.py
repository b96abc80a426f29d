"""Creating and showing functions: checks a create body in full before anything is stored."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import nats.js.errors
from nats.aio.client import Client

from bus import subjects
from bus.bundles import BundleStore, EncodedBundle, encoded_bundle
from bus.collection_streams import CollectionStreams
from bus.registry import Registry, name_hash
from bus.workers import probe_revision
from executor.bundle.handlers import check_handler_present, handler_file
from executor.bundle.rules import check_asset_count, decode_assets
from executor.bundle.unpack import materialize, remove_tree
from executor.functions.rules import (
    CONTROL_CHARS,
    MAX_NAME_CHARS,
    check_env_vars,
    invalid,
    memory_mb,
    unpublishable,
)
from executor.functions.views import asset_meta, asset_of, function_view
from executor.settings import Settings
from schemas import ids
from schemas.bundles import Bundle
from schemas.codec import decode_as, encode
from schemas.errors import (
    FunctionExists,
    FunctionFailed,
    PayloadTooLarge,
    detail,
)
from schemas.functions import (
    Asset,
    CreateFunctionRequest,
    FunctionRecord,
    FunctionSchema,
    FunctionView,
    Revision,
    Runtime,
    check_async_config,
    check_description,
    check_limits,
    check_monitor_config,
)
from schemas.ids import DEFAULT_ALIAS
from schemas.schema_checks import check_schema


@dataclass(frozen=True)
class RevisionDraft:
    """The fields of a revision before they are checked; ``assets`` None reuses ``base``'s."""

    runtime: Runtime
    handler: str
    timeout: int
    read_only_fs: bool
    network: bool
    env_vars: list[str]
    size: str
    schema: FunctionSchema
    assets: list[Asset] | None = None
    base: Revision | None = None


class FunctionService:
    """Creating functions: every check, the bundle budget, the load check, then storing."""

    def __init__(
        self,
        nc: Client,
        registry: Registry,
        bundles: BundleStore,
        settings: Settings,
        collection_stores: Sequence[CollectionStreams] = (),
    ) -> None:
        """``collection_stores``: the per-collection streams a collection's first function
        makes (so a collection with functions always has its record budget)."""
        self.nc = nc
        self.registry = registry
        self.bundles = bundles
        self.settings = settings
        self.collection_stores = collection_stores

    def check_name(self, name: str) -> None:
        if not name.strip() or len(name) > MAX_NAME_CHARS or CONTROL_CHARS.search(name):
            reason = f"must be 1 to {MAX_NAME_CHARS} characters, not blank, no control characters"
            raise invalid("/name", reason)

    async def check_bundle_budget(self, ct: str, revision: Revision) -> None:
        """A new bundle must fit in what is left of its collection's bundle budget."""
        held = await self.registry.collection_bundles(ct)
        if revision.bundle in held:
            return  # stored once already, counted once
        budget = self.settings.collection_bundle_max_bytes
        used = sum(held.values())
        size = sum(asset.size for asset in revision.assets)
        if used + size > budget:
            raise PayloadTooLarge(
                f"collection {ct} holds {used} bytes of bundles; this one ({size} bytes) would "
                f"pass its budget of {budget} (COMPUTEBUS_COLLECTION_BUNDLE_MAX_BYTES): delete "
                "functions it no longer needs"
            )

    async def build_revision(self, draft: RevisionDraft) -> tuple[Revision, EncodedBundle | None]:
        """Check every field of a would-be revision (pointers as in a create body) and build it.

        New assets are decoded and unpacked once here; without them the base revision's bundle is
        reused, and is unpacked only to check a changed handler. Nothing is stored.
        """
        if not 0 < draft.timeout <= self.settings.max_timeout_ms:
            raise invalid(
                "/compute_asset/timeout", f"must be between 1 and {self.settings.max_timeout_ms} ms"
            )
        memory = memory_mb(draft.size)
        if draft.network and not self.settings.allow_network:
            raise invalid(
                "/compute_asset/network",
                "outbound network is off on this installation (COMPUTEBUS_ALLOW_NETWORK)",
            )
        check_env_vars(draft.env_vars, "/compute_asset/env_vars")
        check_schema(draft.schema.input, "/schema/input")
        check_schema(draft.schema.output, "/schema/output")
        handler_file(draft.handler, draft.runtime)
        encoded: EncodedBundle | None = None
        if draft.assets is not None:
            bundle = decode_assets(draft.assets, max_bundle_bytes=self.settings.max_bundle_bytes)
            await asyncio.to_thread(self._check_bundle, bundle, draft.handler, draft.runtime)
            encoded = encoded_bundle(bundle)
            digest = encoded.digest
            metas = [asset_meta(a, f) for a, f in zip(draft.assets, bundle.files, strict=True)]
        else:
            assert draft.base is not None
            digest, metas = draft.base.bundle, draft.base.assets
            if (draft.handler, draft.runtime) != (draft.base.handler, draft.base.runtime):
                bundle = await self.bundles.get(digest)
                await asyncio.to_thread(self._check_bundle, bundle, draft.handler, draft.runtime)
        revision = Revision(
            number=1,
            created=int(time.time()),
            runtime=draft.runtime,
            handler=draft.handler,
            timeout=draft.timeout,
            read_only_fs=draft.read_only_fs,
            network=draft.network,
            env_vars=draft.env_vars,
            size=draft.size,
            memory_mb=memory,
            schema=draft.schema,
            bundle=digest,
            assets=metas,
        )
        return revision, encoded

    async def create(
        self, body: bytes, authorize: Callable[[str], None] | None = None
    ) -> FunctionView:
        """``authorize(collection)`` raises if the caller may not deploy there."""
        check_asset_count(body)
        req = decode_as(CreateFunctionRequest, body)
        spec = req.compute_asset
        ct = spec.collection_topic
        self.check_name(req.name)
        if not ids.COLLECTION_TOPIC.fullmatch(ct):
            raise invalid(
                "/compute_asset/collection_topic",
                f"{ct!r} must match {ids.COLLECTION_TOPIC.pattern}",
            )
        if authorize is not None:
            authorize(ct)
        check_monitor_config(req.monitor_config)
        check_description(req.description)
        check_async_config(req.async_config)
        check_limits(req.limits)
        draft = RevisionDraft(
            runtime=spec.runtime,
            handler=spec.handler,
            timeout=spec.timeout,
            read_only_fs=spec.read_only_fs,
            network=spec.network,
            env_vars=spec.env_vars,
            size=req.size,
            schema=req.schema,
            assets=spec.assets,
        )
        # Refuse a taken name before storing anything (reserve_name below still decides races);
        # the read goes on while the bundle is checked, and a bad bundle is still the answer.
        name_free = asyncio.ensure_future(self._check_name_free(ct, req.name))
        try:
            revision, encoded = await self.build_revision(draft)
        except BaseException:
            name_free.cancel()
            await asyncio.gather(name_free, return_exceptions=True)
            raise
        assert encoded is not None
        await name_free
        await self.check_bundle_budget(ct, revision)
        now = revision.created
        service = await self.registry.create_first_revision(ct, revision)
        written = [subjects.revision_key(ct, service, 1)]
        try:
            await self.registry.reserve_name(ct, req.name, service)
            written.append(subjects.name_key(ct, name_hash(req.name)))
            # Only once the name is ours: a loser of a name race leaves no bundle behind. No one
            # resolves the function before its record (written last) exists.
            await self.bundles.put(encoded)
            record = FunctionRecord(
                collection_topic=ct,
                service=service,
                name=req.name,
                description=req.description,
                monitor_config=req.monitor_config,
                async_config=req.async_config,
                limits=req.limits,
                access=req.access,
                created=now,
                modified=now,
                latest_revision=1,
                aliases={DEFAULT_ALIAS: 1},
            )
            seq = await self.registry.create_function(record)
        except BaseException:
            await self.registry.forget(written)
            raise
        await self._check_loads(record, seq, revision)
        try:
            # Only for a function that stays: each collection's budget is set aside on disk.
            for store in self.collection_stores:
                await store.ready(ct)
        except BaseException:
            await self.registry.delete_function(record, seq)
            raise
        view = function_view(record, revision, "created")
        await self.nc.publish(subjects.event_subject(ct, service, "created"), encode(view))
        await self.nc.flush()  # the event is out before the answer: a subscriber's order holds
        return view

    async def _check_loads(self, record: FunctionRecord, seq: int, revision: Revision) -> None:
        """A worker loads the new function's handler: if the module cannot load (a syntax error,
        a missing module, an exception at import), the create is undone and refused with the
        reasons. A module without the export is created (the contract's seed is one: it answers
        ``handler_not_found``), and so is any function when no worker answers the check (its
        ``publishable`` says so)."""
        ct, ft = record.collection_topic, record.service
        timeout_s = revision.timeout / 1000 + 5
        blockers = await probe_revision(self.nc, ct, ft, revision.number, timeout_s)
        blockers = [b for b in blockers if b.reason == FunctionFailed.code]
        if blockers:
            await self.registry.delete_function(record, seq)
            raise unpublishable(f"function {record.name!r}", blockers)  # nothing is kept

    async def collect_bundles(self) -> set[str]:
        """Delete stored bundles that no revision of any function uses (after a grace period, so
        a create that found its bundle already stored a moment ago does not lose it)."""
        in_use = await self.registry.bundles_in_use()
        return await self.bundles.collect(in_use, self.settings.bundle_gc_grace_s)

    async def _check_name_free(self, ct: str, name: str) -> None:
        try:
            entry = await self.registry.kv.get(subjects.name_key(ct, name_hash(name)))
        except nats.js.errors.KeyNotFoundError:  # also a deleted or purged name
            return
        if entry.value:
            raise FunctionExists(
                f"a function named {name!r} already exists in collection {ct!r}",
                [detail("/name", "already taken in this collection")],
            )

    def _check_bundle(self, bundle: Bundle, handler: str, runtime: str) -> None:
        """Unpack into a scratch dir once, so archive problems and a missing handler are 400s."""
        scratch = Path(tempfile.mkdtemp(prefix="computebus-check-"))
        try:
            target = scratch / "w"
            target.mkdir()
            materialize(bundle, target, max_total_bytes=self.settings.max_bundle_bytes)
            check_handler_present(target, handler, runtime)
        finally:
            remove_tree(scratch)

    async def assets_of(self, revision: Revision) -> list[Asset]:
        bundle = await self.bundles.get(revision.bundle)
        return [
            asset_of(meta, f.data) for meta, f in zip(revision.assets, bundle.files, strict=True)
        ]
