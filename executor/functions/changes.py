"""Changing functions after create: new revisions, alias moves, metadata, delete; each publishes
its lifecycle event. Record writes are compare-and-set on the KV sequence, retried on a race, so
two concurrent changes never lose one; revision numbers are claimed with KV create."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TypeVar

import msgspec
import nats.js.errors
from msgspec import UNSET

from bus import subjects
from bus.registry_view import RegistryView
from bus.workers import probe_revision, sync_workers
from executor.bundle.rules import check_asset_count
from executor.functions.rules import unpublishable
from executor.functions.service import FunctionService, RevisionDraft
from executor.functions.triggers import Triggers
from executor.functions.views import function_view
from schemas.codec import decode_as, encode
from schemas.compatibility import incompatibilities
from schemas.control import Blocker
from schemas.errors import (
    FunctionNotFound,
    IncompatibleSchema,
    InternalError,
    InvalidRequest,
    NotFound,
    detail,
)
from schemas.functions import (
    AliasTarget,
    ComputeAssetPatch,
    FunctionPatch,
    FunctionRecord,
    FunctionView,
    Revision,
    check_async_config,
    check_description,
    check_limits,
    check_monitor_config,
)
from schemas.ids import DEFAULT_ALIAS

ALIAS = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")  # a DNS label
_CAS_ATTEMPTS = 50


class FunctionUpdates:
    """Changes after create: new revisions, alias moves (through the schema gate), metadata,
    delete."""

    def __init__(self, functions: FunctionService, view: RegistryView, triggers: Triggers) -> None:
        self.functions = functions
        self.triggers = triggers
        self.registry = functions.registry
        self.view = view

    # ---- new revisions ---------------------------------------------------------------------

    async def patch_compute_asset(
        self, ct: str, ft: str, body: bytes, *, promote: bool, force: bool = False
    ) -> FunctionView:
        check_asset_count(body)
        patch = decode_as(ComputeAssetPatch, body)
        if patch.collection_topic not in (UNSET, ct) or patch.service not in (UNSET, ft):
            raise InvalidRequest(
                "a compute asset cannot move to another collection or service",
                [detail("/collection_topic", f"must be {ct!r} (and service {ft!r}) if given")],
            )
        _, record = await self._current(ct, ft)
        base = await self._revision(ct, ft, record.latest_revision)
        draft = RevisionDraft(
            runtime=_or(patch.runtime, base.runtime),
            handler=_or(patch.handler, base.handler),
            timeout=_or(patch.timeout, base.timeout),
            read_only_fs=_or(patch.read_only_fs, base.read_only_fs),
            network=_or(patch.network, base.network),
            env_vars=_or(patch.env_vars, base.env_vars),
            size=base.size,
            schema=base.schema,
            assets=None if patch.assets is UNSET else patch.assets,
            base=base,
        )
        return await self._add_revision(ct, ft, draft, promote=promote, force=force)

    async def patch_function(
        self, ct: str, ft: str, body: bytes, *, promote: bool, force: bool = False
    ) -> FunctionView:
        patch = decode_as(FunctionPatch, body)
        if patch.name is not UNSET:
            self.functions.check_name(patch.name)
        if patch.monitor_config is not UNSET:
            check_monitor_config(patch.monitor_config)
        if patch.description is not UNSET:
            check_description(patch.description)
        if patch.limits is not UNSET:
            check_limits(patch.limits)
        if patch.async_config is not UNSET:  # checked whole, before anything is written
            _, before = await self._current(ct, ft)
            check_async_config(patch.async_config.applied_to(before.async_config))
        view: FunctionView | None = None
        if patch.schema is not UNSET or patch.size is not UNSET:
            _, record = await self._current(ct, ft)
            base = await self._revision(ct, ft, record.latest_revision)
            draft = RevisionDraft(
                runtime=base.runtime,
                handler=base.handler,
                timeout=base.timeout,
                read_only_fs=base.read_only_fs,
                network=base.network,
                env_vars=base.env_vars,
                size=_or(patch.size, base.size),
                schema=_or(patch.schema, base.schema),
                base=base,
            )
            view = await self._add_revision(ct, ft, draft, promote=promote, force=force)
        if (
            patch.name is UNSET
            and patch.description is UNSET
            and patch.monitor_config is UNSET
            and patch.async_config is UNSET
            and patch.limits is UNSET
            and patch.access is UNSET
        ):
            return view or await self._view(ct, ft, "updated")
        _, current = await self._current(ct, ft)
        new_name = _or(patch.name, current.name)
        if new_name != current.name:
            await self.registry.reserve_name(ct, new_name, ft)

        def change(record: FunctionRecord) -> FunctionRecord:
            return msgspec.structs.replace(
                record,
                name=new_name,
                description=_or(patch.description, record.description),
                monitor_config=_or(patch.monitor_config, record.monitor_config),
                async_config=(
                    record.async_config
                    if patch.async_config is UNSET
                    else patch.async_config.applied_to(record.async_config)
                ),
                limits=_or(patch.limits, record.limits),
                access=_or(patch.access, record.access),
                modified=int(time.time()),
            )

        try:
            await self._commit(ct, ft, change)
        except BaseException:
            if new_name != current.name:
                await self.registry.release_name(ct, new_name)
            raise
        if new_name != current.name:
            await self.registry.release_name(ct, current.name)
        return await self._announce(ct, ft, "updated")

    async def _add_revision(
        self, ct: str, ft: str, draft: RevisionDraft, *, promote: bool, force: bool
    ) -> FunctionView:
        """A new revision, promoted to production (through the schema gate, unless ``force``)
        when ``promote``; the answer names it in ``new_revision``."""
        revision, encoded = await self.functions.build_revision(draft)
        if promote and not force:
            await self._check_compatible(ct, ft, revision, "the new revision")
        if encoded is not None:
            await self.functions.check_bundle_budget(ct, revision)
            await self.functions.bundles.put(encoded)
        _, record = await self._current(ct, ft)
        stored = await self.registry.add_revision(ct, ft, revision, record.latest_revision + 1)
        blockers = await self.publish_blockers(ct, ft, stored)
        if blockers:
            await self.registry.forget([subjects.revision_key(ct, ft, stored.number)])
            raise unpublishable(f"the new revision of {ct}/{ft}", blockers)

        def change(record: FunctionRecord) -> FunctionRecord:
            aliases = dict(record.aliases)
            if promote:
                aliases[DEFAULT_ALIAS] = stored.number
            return msgspec.structs.replace(
                record,
                latest_revision=max(record.latest_revision, stored.number),
                aliases=aliases,
                modified=int(time.time()),
            )

        await self._commit(ct, ft, change)
        view = await self._announce(ct, ft, "updated")
        if promote:
            await self._announce(ct, ft, "promoted")
        view.new_revision = stored.number
        return view

    # ---- aliases ----------------------------------------------------------------------------

    async def put_alias(
        self, ct: str, ft: str, alias: str, body: bytes, *, force: bool = False
    ) -> dict[str, int | str]:
        if not ALIAS.fullmatch(alias):
            raise InvalidRequest(
                f"alias {alias!r} is not a DNS label",
                [detail("alias", "lowercase letters, digits and '-', 1 to 63 characters")],
            )
        target = decode_as(AliasTarget, body)
        if await self.view.revision(ct, ft, target.revision_number) is None:
            await self._current(ct, ft)  # a 404 for the function first
            raise InvalidRequest(
                f"function {ct}/{ft} has no revision {target.revision_number}",
                [detail("/revision_number", "no such revision")],
            )
        revision = await self._revision(ct, ft, target.revision_number)
        if alias == DEFAULT_ALIAS and not force:
            await self._check_compatible(ct, ft, revision, f"revision {revision.number}")
        blockers = await self.publish_blockers(ct, ft, revision)
        if blockers:
            raise unpublishable(f"revision {revision.number} of {ct}/{ft}", blockers)

        def change(record: FunctionRecord) -> FunctionRecord:
            return msgspec.structs.replace(
                record,
                aliases={**record.aliases, alias: target.revision_number},
                modified=int(time.time()),
            )

        await self._commit(ct, ft, change)
        await self._announce(ct, ft, "promoted")
        return {"alias": alias, "revision_number": target.revision_number}

    async def publish_blockers(self, ct: str, ft: str, revision: Revision) -> list[Blocker]:
        """Why ``revision`` cannot serve invocations: a worker loads its handler in a sandbox
        (file, export, load errors, runtime present on that worker) without calling it."""
        timeout_s = revision.timeout / 1000 + 5
        return await probe_revision(self.functions.nc, ct, ft, revision.number, timeout_s)

    async def _check_compatible(self, ct: str, ft: str, target: Revision, what: str) -> None:
        """Refuse to point production at a revision whose schemas would break its callers."""
        _, record = await self._current(ct, ft)
        current_number = record.aliases.get(DEFAULT_ALIAS)
        if current_number is None:
            return
        current = await self._revision(ct, ft, current_number)
        problems = incompatibilities(
            current.schema.input, target.schema.input, current.schema.output, target.schema.output
        )
        if problems:
            raise IncompatibleSchema(
                f"{what} is not schema-compatible with production (revision {current_number}): "
                + "; ".join(p["message"] for p in problems)
                + ". Use ?force=true to promote anyway, or ?promote=false to stage it.",
                problems,
            )

    # ---- delete -----------------------------------------------------------------------------

    async def delete(self, ct: str, ft: str) -> FunctionView:
        for _ in range(_CAS_ATTEMPTS):
            seq, record = await self._current(ct, ft)
            revision = await self._revision(ct, ft, record.aliases.get(DEFAULT_ALIAS, 1))
            try:
                await self.registry.delete_function(record, seq)
            except nats.js.errors.KeyWrongLastSequenceError:
                continue
            self.view.forget_function(ct, ft)
            await self.triggers.function_deleted(ct, ft)
            view = function_view(record, revision, "deleted")
            view.modified = int(time.time())
            await self.functions.nc.publish(subjects.event_subject(ct, ft, "deleted"), encode(view))
            await self.functions.nc.flush()
            await self.functions.collect_bundles()
            return view
        raise InternalError(f"function {ct}/{ft} kept changing; try the delete again")

    # ---- reading ----------------------------------------------------------------------------

    async def revisions(self, ct: str, ft: str) -> list[Revision]:
        await self._current(ct, ft)
        return await self.registry.list_revisions(ct, ft)

    async def _current(self, ct: str, ft: str) -> tuple[int, FunctionRecord]:
        found = await self.registry.get_function_entry(ct, ft)
        if found is None:
            raise FunctionNotFound(f"function {ct}/{ft} does not exist")
        return found

    async def _revision(self, ct: str, ft: str, number: int) -> Revision:
        revision = await self.view.revision(ct, ft, number)
        if revision is None:
            raise NotFound(f"function {ct}/{ft} has no revision {number}")
        return revision

    async def _commit(
        self, ct: str, ft: str, change: Callable[[FunctionRecord], FunctionRecord]
    ) -> FunctionRecord:
        """Apply ``change`` to the stored record atomically (retrying when another write won)."""
        for _ in range(_CAS_ATTEMPTS):
            seq, record = await self._current(ct, ft)
            updated = change(record)
            try:
                new_seq = await self.registry.update_function(updated, seq)
            except nats.js.errors.KeyWrongLastSequenceError:
                continue
            self.view.remember(ct, ft, new_seq, updated)  # our own reads see our write at once
            await sync_workers(self.functions.nc, ct, ft, new_seq, encode(updated))
            return updated
        raise InternalError(f"function {ct}/{ft} kept changing; try again")

    async def _view(self, ct: str, ft: str, kind: str) -> FunctionView:
        _, record = await self._current(ct, ft)
        revision = await self._revision(ct, ft, record.aliases.get(DEFAULT_ALIAS, 1))
        return function_view(record, revision, kind)

    async def _announce(self, ct: str, ft: str, kind: str) -> FunctionView:
        view = await self._view(ct, ft, kind)
        await self.functions.nc.publish(subjects.event_subject(ct, ft, kind), encode(view))
        await self.functions.nc.flush()
        return view


T = TypeVar("T")


def _or(value: T | msgspec.UnsetType, default: T) -> T:
    return default if isinstance(value, msgspec.UnsetType) else value
