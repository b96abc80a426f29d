"""Starting the HTTP API: its stores, the management services and uvicorn on one socket;
then serving until the stop event, and draining."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Generator

import uvicorn

from bus.connect import redact
from bus.embedded import callout_keys_beside
from bus.nats_callout import load_callout_keys, store_callout_keys
from bus.stores import Stores
from bus.subject_triggers import TriggerStreams
from bus.tokens import TokenStore
from bus.triggers import TriggerStore
from executor.api.admin_token import ensure_admin_token
from executor.api.app import build_app
from executor.api.context import ApiContext
from executor.api.event_stream import EventStreams
from executor.api.hot_path import HotPath
from executor.api.metrics import ApiMetrics
from executor.api.nats_auth import NatsAuth
from executor.api.rate_limits import RateLimits
from executor.api.worker_watch import WorkerWatch
from executor.functions.changes import FunctionUpdates
from executor.functions.schedules import Schedules
from executor.functions.service import FunctionService
from executor.functions.triggers import Triggers
from executor.settings import Settings
from executor.tracing import tracing_for

log = logging.getLogger("computebus.api")


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


async def _answer_auth_callout(
    bus: Stores, tokens: TokenStore, url: str, settings: Settings
) -> NatsAuth | None:
    if settings.nats_credentials is not None:  # a bus set up by `computebus nats-config`
        keys = callout_keys_beside(settings.nats_credentials)
        if keys is not None:
            await store_callout_keys(bus.nc.jetstream(), keys)
    keys = await load_callout_keys(bus.nc.jetstream())
    if keys is None:
        log.info("no auth callout keys on the bus: NATS clients cannot connect with API tokens")
        return None
    nats_auth = NatsAuth(bus.nc, tokens, bus.view, keys, url)
    await nats_auth.start()
    return nats_auth


def _log_ready(api_url: str, nats_url: str, bus: Stores, settings: Settings) -> None:
    log.info(
        "api ready on %s (nats %s): %d functions in its registry view; access log %s; "
        "/metrics and /openapi.json %s; CORS origins: %s",
        api_url,
        redact(nats_url),
        bus.view.function_count(),
        "on" if settings.access_log else "off (COMPUTEBUS_ACCESS_LOG)",
        "open" if settings.ops_open else "behind a token",
        ", ".join(settings.cors_origins) or "none",
        extra={"api": api_url},
    )


async def run_api(
    url: str, settings: Settings, stop: asyncio.Event, on_ready: Callable[[str], None] | None = None
) -> None:
    tracing = tracing_for(settings, "api")  # first: it refuses a missing exporter
    bus = await Stores.open(url, "computebus-api", settings.store_limits())
    functions = FunctionService(
        bus.nc,
        bus.registry,
        bus.bundles,
        settings,
        collection_stores=(bus.monitor.streams, bus.dead_letters.streams),
    )
    tokens = await TokenStore.open(bus.nc.jetstream(), replicas=settings.replicas)
    await ensure_admin_token(tokens, settings.data_dir)
    nats_auth = await _answer_auth_callout(bus, tokens, url, settings)
    trigger_store = await TriggerStore.open(bus.nc.jetstream(), replicas=settings.replicas)
    streams = TriggerStreams(bus.nc.jetstream(), replicas=settings.replicas)
    triggers = Triggers(trigger_store, bus.view, bus.nc, streams)
    await trigger_store.start()
    triggers.follow()
    rate_limits = RateLimits(bus.nc)
    await rate_limits.start()
    workers = WorkerWatch(bus.nc)
    await workers.start()
    live = EventStreams(settings.live_streams_max)
    ctx = ApiContext(
        nc=bus.nc,
        registry=bus.registry,
        view=bus.view,
        bundles=bus.bundles,
        monitor=bus.monitor,
        queue=bus.queue,
        dead_letters=bus.dead_letters,
        functions=functions,
        updates=FunctionUpdates(functions, bus.view, triggers),
        tokens=tokens,
        rate_limits=rate_limits,
        workers=workers,
        seal=bus.seal,
        settings=settings,
        metrics=ApiMetrics(bus.nc, settings.metrics_max_functions, lambda: live.count),
        live=live,
        schedules=Schedules(bus.nc, bus.schedules, bus.view),
        triggers=triggers,
        tracing=tracing,
    )
    sock = bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        HotPath(build_app(ctx), cors=bool(settings.cors_origins)),
        loop="none",
        http="httptools",
        lifespan="off",
        # uvicorn's loggers go through the root logger, in computebus's format (levels set by
        # executor.log_format); its access log only when asked for.
        log_config=None,
        log_level=None,
        access_log=settings.access_log,
        timeout_graceful_shutdown=int(settings.drain_s),
    )
    server = _Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started and not serving.done():
            await asyncio.sleep(0.01)
        shown = f"[{host}]" if ":" in host else host
        if server.started:
            _log_ready(f"http://{shown}:{port}", url, bus, settings)
        if server.started and on_ready:
            on_ready(f"http://{shown}:{port}")
        await asyncio.wait(
            [serving, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        began = time.monotonic()
        server.should_exit = True
        ctx.live.close()  # open streams would hold the drain until drain_s
        await serving
        log.info("api stopped: open requests drained in %.2f s", time.monotonic() - began)
        sock.close()
        await rate_limits.close()
        await workers.close()
        if nats_auth is not None:
            await nats_auth.close()
        await tokens.close()
        await triggers.close()
        await trigger_store.close()
        await bus.close()
        await asyncio.to_thread(tracing.close)
