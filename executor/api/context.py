"""What every route needs, built once per API process and kept on ``app.state.ctx``."""

from __future__ import annotations

from dataclasses import dataclass

from nats.aio.client import Client
from starlette.requests import Request

from bus.async_queue import AsyncQueue
from bus.bundles import BundleStore
from bus.caller_seal import CallerSeal
from bus.dead_letters import DeadLetters
from bus.monitor import MonitorStore
from bus.registry import Registry
from bus.registry_view import RegistryView
from bus.tokens import TokenStore
from executor.api.event_stream import EventStreams
from executor.api.metrics import ApiMetrics
from executor.api.rate_limits import RateLimits
from executor.api.worker_watch import WorkerWatch
from executor.functions.changes import FunctionUpdates
from executor.functions.schedules import Schedules
from executor.functions.service import FunctionService
from executor.functions.triggers import Triggers
from executor.settings import Settings
from executor.tracing import NO_TRACING, Tracing
from schemas import ids
from schemas.errors import FunctionNotFound, InvalidRequest, detail


@dataclass
class ApiContext:
    """What every route needs, built once per API process."""

    nc: Client
    registry: Registry
    view: RegistryView
    bundles: BundleStore
    monitor: MonitorStore
    queue: AsyncQueue
    dead_letters: DeadLetters
    functions: FunctionService
    updates: FunctionUpdates
    tokens: TokenStore
    rate_limits: RateLimits
    workers: WorkerWatch
    seal: CallerSeal
    settings: Settings
    metrics: ApiMetrics
    live: EventStreams  # the live invocation streams open
    schedules: Schedules
    triggers: Triggers
    tracing: Tracing = NO_TRACING


def ctx_of(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


def checked_collection(ct: str, field: str = "collection_topic") -> str:
    """``ct``, or a 400 naming ``field`` (``?collection_topic`` for a query parameter) when it
    is not a collection's name."""
    if not ids.COLLECTION_TOPIC.fullmatch(ct):
        reason = f"must match {ids.COLLECTION_TOPIC.pattern}"
        raise InvalidRequest(f"collection_topic {reason}", [detail(field, reason)])
    return ct


async def function_ref(request: Request) -> tuple[str, str]:
    """The ``{ct}/{ft}`` of the path, checked: a bad collection is a 400, a bad id a 404.
    ``ft`` may also be the function's name (a service id, nine digits, wins)."""
    ct = request.path_params["ct"]
    ft = request.path_params["ft"]
    if not ids.COLLECTION_TOPIC.fullmatch(ct):
        reason = f"must match {ids.COLLECTION_TOPIC.pattern}"
        raise InvalidRequest(
            f"collection_topic {ct!r} {reason}", [detail("collection_topic", reason)]
        )
    service = await ctx_of(request).view.service_of(ct, ft)
    if service is None:
        raise FunctionNotFound(f"function {ct}/{ft} does not exist (no such name or service id)")
    return ct, service
