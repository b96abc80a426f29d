"""Starting a worker: its stores, its sandbox (checked), the invoker and the subscriptions;
then serving until the stop event, and draining."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from bus.connect import redact
from bus.result_events import ResultEvents
from bus.stores import Stores
from bus.streams import REPLY_HEADROOM
from executor.bundle.unpack import remove_tree
from executor.runtime.launch import open_sandbox
from executor.runtime.pool import InstancePool
from executor.runtime.spares import Spares
from executor.runtime.workspace_cache import WorkspaceCache
from executor.settings import Settings
from executor.tracing import tracing_for
from executor.worker.async_records import AsyncRecords
from executor.worker.invoke import Invoker
from executor.worker.metrics import MetricsServer, WorkerMetrics, WorkerState, process_counts
from executor.worker.revisions import PreparedRevisions
from executor.worker.settle import AsyncConsumer
from executor.worker.subscriptions import Worker, new_worker_id

log = logging.getLogger("computebus")


async def run_worker(
    url: str, settings: Settings, stop: asyncio.Event, on_ready: Callable[[], None] | None = None
) -> None:
    tracing = tracing_for(settings, "worker")  # first: it refuses a missing exporter
    bus = await Stores.open(url, "computebus-worker", settings.store_limits())
    worker_id = new_worker_id()
    try:
        sandbox, workspaces_dir = await asyncio.to_thread(
            open_sandbox, settings, f"computebus-{worker_id}"
        )
    except BaseException:
        await bus.close()
        raise
    max_result_bytes = min(settings.max_payload_bytes, bus.nc.max_payload - REPLY_HEADROOM)
    spares = Spares(
        sandbox,
        workspaces_dir,
        settings.spares,
        log_cap=settings.log_cap_bytes,
        max_reply_bytes=max_result_bytes + 1024,
    )
    instances = InstancePool(
        max_per_revision=settings.pool_per_revision,
        max_waiters=settings.pool_max_waiters,
        idle_s=settings.idle_s,
        max_processes=settings.worker_concurrency,
        spares=spares,
    )
    metrics = WorkerMetrics(settings.metrics_max_functions)
    revisions = PreparedRevisions(
        bus.view,
        bus.bundles,
        WorkspaceCache(workspaces_dir, max_total_bytes=settings.max_bundle_bytes * 4),
        instances,
        sandbox,
        spares,
        log_cap_bytes=settings.log_cap_bytes,
        max_result_bytes=max_result_bytes,
        on_spawn=metrics.spawned,
    )
    invoker = Invoker(bus.view, revisions, bus.monitor, settings, worker_id, metrics, tracing)
    events = ResultEvents(bus.nc)
    events.start()
    records = AsyncRecords(
        bus.nc, bus.monitor, bus.dead_letters, bus.view, events, metrics.dead_lettered
    )
    consumer = AsyncConsumer(
        bus.nc,
        bus.queue,
        records,
        bus.view,
        bus.monitor,
        invoker,
        settings,
        worker_id,
        bus.seal,
        metrics,
        tracing,
    )
    server: MetricsServer | None = None
    if settings.worker_metrics_port is not None:
        state = WorkerState(
            worker_id,
            sandbox.level,
            settings,
            processes=lambda: process_counts(revisions, spares),
            running=lambda: invoker.running,
        )
        registry = metrics.registry(state, bus.nc)
        server = MetricsServer(registry, settings.worker_metrics_host, settings.worker_metrics_port)
    worker = Worker(
        bus.nc,
        bus.view,
        invoker,
        revisions,
        settings,
        consumer,
        worker_id,
        bus.seal,
        events,
        metrics,
        server.url if server is not None else "",
    )
    instances.start()
    await worker.start()
    runtimes = ", ".join(f"{n} {i.version}" for n, i in sorted(sandbox.interpreters.items()))
    gaps = f" (without: {', '.join(sandbox.gaps)})" if sandbox.gaps else ""
    log.info(
        "worker %s ready on %s: isolation %s%s; runtimes %s; %d functions in its registry view; "
        "up to %d invocations at once (%d Async)%s",
        worker.id,
        redact(url),
        sandbox.level,
        gaps,
        runtimes or "none",
        bus.view.function_count(),
        settings.worker_concurrency,
        settings.async_concurrency,
        f"; metrics at {server.url}" if server is not None else "",
        extra={"worker": worker.id, "isolation": sandbox.level},
    )
    if on_ready:
        on_ready()
    try:
        await stop.wait()
    finally:
        began = time.monotonic()
        sync, async_ = worker.in_flight()
        await worker.drain(settings.drain_s)
        took = time.monotonic() - began
        late = "; past the deadline what still ran was stopped" if took > settings.drain_s else ""
        log.info(
            "worker %s stopped: drained %d sync and %d Async invocations in %.2f s "
            "(COMPUTEBUS_DRAIN_S %s)%s",
            worker.id,
            sync,
            async_,
            took,
            settings.drain_s,
            late,
            extra={"worker": worker.id, "drained_sync": sync, "drained_async": async_},
        )
        if server is not None:
            await asyncio.to_thread(server.close)
        await events.close()
        await asyncio.to_thread(tracing.close)
        await asyncio.to_thread(sandbox.close)
        if not workspaces_dir.is_relative_to(settings.data_dir.resolve()):
            await asyncio.to_thread(remove_tree, workspaces_dir)  # this run's own, in $TMPDIR
        await bus.close()
