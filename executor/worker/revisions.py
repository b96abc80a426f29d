"""What a worker prepares once per revision and keeps while an alias points to it: the
workspace, the compiled validators and the pool of warm processes; the load check (probe);
and retiring revisions and functions that are gone."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bus.bundles import BundleStore
from bus.registry_view import RegistryView
from executor.bundle.handlers import handler_file
from executor.runtime.launch import Handler, launch_assigned, launch_plan
from executor.runtime.limits import Limits
from executor.runtime.pool import InstancePool, RevisionKey, RevisionPool
from executor.runtime.process import HandlerProcess, ProcessGone
from executor.runtime.sandbox import RuntimeMissing, Sandbox
from executor.runtime.spares import Spares
from executor.runtime.workspace_cache import WorkspaceCache
from executor.worker.reply_errors import reply_error
from schemas.control import RUNTIME_UNAVAILABLE, Blocker
from schemas.errors import ComputeError, FunctionFailed, FunctionNotFound, Timeout
from schemas.functions import FunctionRecord, Revision
from schemas.handler_protocol import PROBE_REQUEST
from schemas.validation import CompiledSchema

log = logging.getLogger("computebus.coldstart")


@dataclass
class ColdStart:
    """Where a revision's first process spent its time on this worker (ms), logged once it
    has loaded its handler: what ``computebus bench --cold`` reads."""

    bundle_ms: float = 0.0  # fetching the bundle from the Object Store (0 when unpacked)
    unpack_ms: float = 0.0
    # until the process answers its assignment: a new one starting, or a spare's files linked
    spawn_ms: float = 0.0
    load_ms: float = 0.0  # loading the handler (the load check)
    spare: bool = False
    logged: bool = False

    def line(self, key: RevisionKey) -> str:
        parts = ", ".join(
            f"{name} {getattr(self, name + '_ms'):.3f} ms"
            for name in ("bundle", "unpack", "spawn", "load")
        )
        source = "a spare" if self.spare else "a new process"
        return f"cold start {key[0]}/{key[1]}/{key[2]}: {parts} ({source})"


@dataclass(frozen=True)
class PreparedRevision:
    """One revision ready to run: its workspace's handler file, validators and process pool."""

    key: RevisionKey
    revision: Revision
    handler_file: str
    input_schema: CompiledSchema
    output_schema: CompiledSchema
    pool: RevisionPool
    cold: ColdStart
    # One slow validation of this revision at a time, so one function cannot hold every thread.
    validating: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))


class PreparedRevisions:
    """The prepared revisions of one worker, and their pools of warm processes."""

    def __init__(
        self,
        view: RegistryView,
        bundles: BundleStore,
        workspaces: WorkspaceCache,
        instances: InstancePool,
        sandbox: Sandbox,
        spares: Spares,
        *,
        log_cap_bytes: int,
        max_result_bytes: int,
        on_spawn: Callable[[str, bool, float], None],
    ) -> None:
        self.on_spawn = on_spawn  # (runtime, from a spare, seconds) per new process
        self.view = view
        self.bundles = bundles
        self.workspaces = workspaces
        self.instances = instances
        self.sandbox = sandbox
        self.spares = spares
        self.log_cap_bytes = log_cap_bytes
        self.max_result_bytes = max_result_bytes
        self._prepared: dict[RevisionKey, PreparedRevision] = {}
        self._numbers: dict[tuple[str, str], set[int]] = {}  # per function: what is prepared
        self._preparing: dict[RevisionKey, asyncio.Lock] = {}

    def processes_by_runtime(self) -> dict[str, int]:
        """Warm processes per runtime (for the metrics, read at a scrape)."""
        counts: dict[str, int] = {}
        for prepared in list(self._prepared.values()):
            runtime = prepared.revision.runtime
            counts[runtime] = counts.get(runtime, 0) + prepared.pool.size
        return counts

    async def prepare(self, function: FunctionRecord, revision: Revision) -> PreparedRevision:
        """Everything per revision that can be done once: workspace, validators, pool."""
        key = (function.collection_topic, function.service, revision.number)
        prepared = self._prepared.get(key)
        if prepared is not None:
            return prepared
        lock = self._preparing.setdefault(key, asyncio.Lock())
        async with lock:
            prepared = self._prepared.get(key)
            if prepared is None:
                prepared = await self._build(key, revision)
                self._prepared[key] = prepared
                self._numbers.setdefault(key[:2], set()).add(key[2])
        self._preparing.pop(key, None)
        return prepared

    async def _build(self, key: RevisionKey, revision: Revision) -> PreparedRevision:
        cold = ColdStart()
        workspace = self.workspaces.path_for(revision.bundle)
        if workspace is None:
            t0 = time.perf_counter()
            bundle = await self.bundles.get(revision.bundle)
            t1 = time.perf_counter()
            workspace = await asyncio.to_thread(self.workspaces.install, revision.bundle, bundle)
            cold.bundle_ms = (t1 - t0) * 1000
            cold.unpack_ms = (time.perf_counter() - t1) * 1000
        file, export = handler_file(revision.handler, revision.runtime)
        handler = Handler(file, export, revision.env_vars)
        runtime = revision.runtime
        limits = Limits(revision.memory_mb, revision.read_only_fs, revision.network)
        plan = launch_plan(self.sandbox, runtime=runtime, workspace=workspace, limits=limits)
        sandbox, spares, log_cap = self.sandbox, self.spares, self.log_cap_bytes
        max_reply_bytes = self.max_result_bytes + 1024  # the reply frame's envelope
        on_spawn = self.on_spawn

        async def spawn() -> HandlerProcess:
            t0 = time.perf_counter()
            process: HandlerProcess | None = await spares.assigned(
                runtime, limits, workspace, handler
            )
            spare = process is not None
            if process is None:
                process = await launch_assigned(
                    sandbox, plan, handler, log_cap=log_cap, max_reply_bytes=max_reply_bytes
                )
            elapsed = time.perf_counter() - t0
            on_spawn(runtime, spare, elapsed)
            if not cold.spawn_ms:
                cold.spare = spare
                cold.spawn_ms = elapsed * 1000
            return process

        return PreparedRevision(
            key=key,
            revision=revision,
            handler_file=file,
            input_schema=CompiledSchema(revision.schema.input),
            output_schema=CompiledSchema(revision.schema.output),
            pool=self.instances.for_revision(key, spawn),
            cold=cold,
        )

    async def probe(self, ct: str, ft: str, number: int) -> list[Blocker]:
        """Load the revision's handler in a sandboxed process without calling it; the reasons it
        could not be published (empty when it loads and has its export)."""
        try:
            function, revision = await self.view.resolve(ct, ft, revision=number)
            prepared = await self.prepare(function, revision)
        except ComputeError as exc:
            return [Blocker(reason=exc.code, message=exc.message)]
        except RuntimeMissing as exc:
            return [Blocker(reason=RUNTIME_UNAVAILABLE, message=str(exc))]
        try:
            process = await prepared.pool.acquire(revision.timeout / 1000)
        except TimeoutError:
            return [Blocker(reason=Timeout.code, message="no process was free for the load check")]
        t0 = time.perf_counter()
        try:
            reply, _ = await process.invoke(PROBE_REQUEST, revision.timeout / 1000)
            if prepared.cold.spawn_ms and not prepared.cold.logged:
                prepared.cold.load_ms = (time.perf_counter() - t0) * 1000
                prepared.cold.logged = True
                log.info("%s", prepared.cold.line(prepared.key))
        except TimeoutError:
            return [
                Blocker(
                    reason="timeout", message="loading the handler took longer than its timeout"
                )
            ]
        except ProcessGone as exc:
            return [Blocker(reason=FunctionFailed.code, message=f"the handler process died: {exc}")]
        finally:
            await prepared.pool.release(process)
        if reply.ok:
            return []
        error = reply_error(reply, prepared)
        return [Blocker(reason=error.code, message=error.message)]

    async def retire_revision(self, ct: str, ft: str, number: int) -> None:
        """A revision was removed (a refused update): forget what was prepared for it."""
        self._forget(ct, ft, {number})
        await self.instances.retire((ct, ft, number))

    async def retire_unaliased(self, ct: str, ft: str, aliased: set[int]) -> None:
        """Stop the warm processes of this function's revisions that no alias points to."""
        for number in self._forget(ct, ft, self._numbers.get((ct, ft), set()) - aliased):
            await self.instances.retire((ct, ft, number))

    async def forget_function(self, ct: str, ft: str) -> None:
        """Drop what was prepared for a deleted function and stop its processes; invocations
        still waiting for one answer ``function_not_found``."""
        gone = FunctionNotFound(f"function {ct}/{ft} was deleted")
        for number in self._forget(ct, ft, self._numbers.get((ct, ft), set())):
            await self.instances.retire((ct, ft, number), gone)

    def _forget(self, ct: str, ft: str, numbers: set[int]) -> list[int]:
        """Drop what was prepared for these revisions of the function; the numbers dropped."""
        held = self._numbers.get((ct, ft), set())
        gone = sorted(numbers & held)
        for number in gone:
            self._prepared.pop((ct, ft, number), None)
        held -= set(gone)
        if not held:
            self._numbers.pop((ct, ft), None)
        return gone
