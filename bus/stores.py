"""Opening every store a role needs on one NATS connection: the registry and its view, bundles,
monitor records, the Async queue and dead letters, schedules."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from nats.aio.client import Client
from nats.js import JetStreamContext

from bus.async_queue import AsyncQueue
from bus.bundles import BundleStore
from bus.caller_seal import CallerSeal
from bus.connect import connect
from bus.dead_letters import DeadLetters
from bus.monitor import MonitorStore
from bus.nats_users import INTERNAL_INBOX
from bus.registry import Registry
from bus.registry_view import RegistryView
from bus.schedules import ScheduleStream

_PENDING_ACKS_S = 10.0

log = logging.getLogger("computebus.bus")


@dataclass(frozen=True)
class StoreLimits:
    """The stores' own settings (the operator's, from ``Settings.store_limits``)."""

    monitor_max_bytes: int
    dead_letter_max_bytes: int
    dead_letter_max_age_s: float
    async_dedupe_window_s: float
    async_ack_wait_s: float
    async_max_bytes: int
    replicas: int = 1


@dataclass
class Stores:
    """Every store a role uses, opened (made or brought up to date) on one connection."""

    nc: Client
    js: JetStreamContext
    registry: Registry
    bundles: BundleStore
    monitor: MonitorStore
    view: RegistryView
    queue: AsyncQueue
    dead_letters: DeadLetters
    seal: CallerSeal
    schedules: ScheduleStream

    @classmethod
    async def open(cls, url: str, name: str, limits: StoreLimits) -> Stores:
        # Replies to the roles go to inboxes a client user may not read (nats_users).
        nc = await connect(url, name=name, inbox_prefix=INTERNAL_INBOX)
        js = nc.jetstream()
        replicas = limits.replicas
        log.info("stores at %d replica(s) (COMPUTEBUS_REPLICAS)", replicas)
        registry = await Registry.open(js, nc.max_payload, replicas=replicas)
        view = RegistryView(registry)
        await view.start()
        schedules = await ScheduleStream.open(js, replicas=replicas)  # before the queue sources it
        return cls(
            nc=nc,
            js=js,
            registry=registry,
            bundles=await BundleStore.open(js, replicas=replicas),
            monitor=await MonitorStore.open(
                nc, max_bytes=limits.monitor_max_bytes, replicas=replicas
            ),
            view=view,
            queue=await AsyncQueue.open(
                js,
                dedupe_window_s=limits.async_dedupe_window_s,
                ack_wait_s=limits.async_ack_wait_s,
                max_bytes=limits.async_max_bytes,
                replicas=replicas,
            ),
            dead_letters=await DeadLetters.open(
                js,
                nc.max_payload,
                max_age_s=limits.dead_letter_max_age_s,
                max_bytes=limits.dead_letter_max_bytes,
                replicas=replicas,
            ),
            seal=await CallerSeal.open(js, replicas=replicas),
            schedules=schedules,
        )

    async def close(self) -> None:
        await self.view.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.monitor.publisher.wait_idle(), _PENDING_ACKS_S)
        if not self.nc.is_closed:
            await self.nc.drain()
