"""The two roles, each runnable alone against any NATS: the HTTP API and the worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Generator
from dataclasses import dataclass

import uvicorn
from nats.aio.client import Client
from nats.js import JetStreamContext

from bus.async_queue import AsyncQueue
from bus.bundles import BundleStore
from bus.connect import connect
from bus.dead_letters import DeadLetters
from bus.monitor import MonitorStore
from bus.registry import Registry
from bus.registry_view import RegistryView
from bus.streams import REPLY_HEADROOM
from executor.api.app import build_app
from executor.api.context import ApiContext
from executor.async_consumer import AsyncConsumer
from executor.function_service import FunctionService
from executor.function_updates import FunctionUpdates
from executor.invocation import Invoker
from executor.launch import open_sandbox
from executor.pool import InstancePool
from executor.settings import Settings
from executor.worker import Worker, new_worker_id
from executor.workspace import WorkspaceCache

log = logging.getLogger("computebus")
_PENDING_ACKS_S = 10.0


@dataclass
class Bus:
    nc: Client
    js: JetStreamContext
    registry: Registry
    bundles: BundleStore
    monitor: MonitorStore
    view: RegistryView
    queue: AsyncQueue
    dead_letters: DeadLetters

    @classmethod
    async def open(cls, url: str, name: str, settings: Settings) -> Bus:
        nc = await connect(url, name=name)
        js = nc.jetstream()
        registry = await Registry.open(js, nc.max_payload)
        view = RegistryView(registry)
        await view.start()
        return cls(
            nc=nc,
            js=js,
            registry=registry,
            bundles=await BundleStore.open(js),
            monitor=await MonitorStore.open(
                js, nc.max_payload, max_bytes=settings.monitor_max_bytes
            ),
            view=view,
            queue=await AsyncQueue.open(
                js,
                dedupe_window_s=settings.async_dedupe_window_s,
                ack_wait_s=settings.async_ack_wait_s,
                max_bytes=settings.async_max_bytes,
            ),
            dead_letters=await DeadLetters.open(
                js,
                nc.max_payload,
                max_age_s=settings.dead_letter_max_age_s,
                max_bytes=settings.dead_letter_max_bytes,
            ),
        )

    async def close(self) -> None:
        await self.view.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.js.publish_async_completed(), _PENDING_ACKS_S)
        if not self.nc.is_closed:
            await self.nc.drain()


async def run_worker(
    url: str, settings: Settings, stop: asyncio.Event, on_ready: Callable[[], None] | None = None
) -> None:
    bus = await Bus.open(url, "computebus-worker", settings)
    worker_id = new_worker_id()
    try:
        sandbox, workspaces_dir = await asyncio.to_thread(
            open_sandbox, settings, f"computebus-{worker_id}"
        )
    except BaseException:
        await bus.close()
        raise
    instances = InstancePool(
        max_per_revision=settings.pool_per_revision,
        max_waiters=settings.pool_max_waiters,
        idle_s=settings.idle_s,
        max_processes=settings.worker_concurrency,
    )
    invoker = Invoker(
        view=bus.view,
        bundles=bus.bundles,
        workspaces=WorkspaceCache(workspaces_dir, max_total_bytes=settings.max_bundle_bytes * 4),
        instances=instances,
        monitor=bus.monitor,
        settings=settings,
        max_result_bytes=min(settings.max_payload_bytes, bus.nc.max_payload - REPLY_HEADROOM),
        sandbox=sandbox,
        worker_id=worker_id,
    )
    consumer = AsyncConsumer(bus.nc, bus.queue, bus.dead_letters, invoker, settings)
    worker = Worker(bus.nc, invoker, settings, consumer)
    instances.start()
    await worker.start()
    log.info("worker %s ready", worker.id)
    if on_ready:
        on_ready()
    try:
        await stop.wait()
    finally:
        await worker.drain(settings.drain_s)
        await asyncio.to_thread(sandbox.close)
        await bus.close()


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the caller's stop event is the only trigger."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def run_api(
    url: str, settings: Settings, stop: asyncio.Event, on_ready: Callable[[str], None] | None = None
) -> None:
    bus = await Bus.open(url, "computebus-api", settings)
    functions = FunctionService(
        bus.nc,
        bus.registry,
        bus.bundles,
        settings,
        collection_stores=(bus.monitor.streams, bus.dead_letters.streams),
    )
    ctx = ApiContext(
        nc=bus.nc,
        registry=bus.registry,
        view=bus.view,
        bundles=bus.bundles,
        monitor=bus.monitor,
        queue=bus.queue,
        dead_letters=bus.dead_letters,
        functions=functions,
        updates=FunctionUpdates(functions, bus.view),
        settings=settings,
    )
    sock = bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        build_app(ctx),
        loop="none",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=int(settings.drain_s),
    )
    server = _Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started and not serving.done():
            await asyncio.sleep(0.01)
        if server.started and on_ready:
            shown = f"[{host}]" if ":" in host else host
            on_ready(f"http://{shown}:{port}")
        await asyncio.wait(
            [serving, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        server.should_exit = True
        await serving
        sock.close()
        await bus.close()
