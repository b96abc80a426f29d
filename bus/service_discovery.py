"""The workers as one NATS micro service (ADR-32), so ``nats micro ls`` shows computebus.

Every worker answers ``$SRV.PING``, ``$SRV.INFO`` and ``$SRV.STATS``, plain and as
``.computebus`` and ``.computebus.<id>`` (no queue group: each instance answers), with one
endpoint per function of its registry view: the function's request subject and the workers'
queue group exactly as the invocations use them, the schemas of the revision plain invokes run
(``production``) in the endpoint's metadata, and the counts the worker keeps of the requests it
answered there (``Tallies``, bumped on the hot path: plain attributes, no lock, no I/O).

The function subscriptions are not moved onto nats-py's ``nats.micro`` endpoints: those would
take their own queue group. Async invocations arrive through JetStream, not on an endpoint, and
are not counted here.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from bus import subjects
from bus.nats_users import REPLY_PREFIXES
from bus.registry_view import RegistryView
from bus.streams import REPLY_HEADROOM
from schemas.codec import encode
from schemas.errors import ComputeError
from schemas.functions import FunctionRecord, Revision
from schemas.ids import DEFAULT_ALIAS
from schemas.micro import (
    UNKNOWN_VERSION,
    EndpointInfo,
    EndpointStats,
    InfoResponse,
    PingResponse,
    StatsResponse,
    average_ns,
    fit,
    rfc3339,
)

log = logging.getLogger("computebus.discovery")

FunctionKey = tuple[str, str]


def package_version() -> str:
    """computebus's version, as ADR-32's ``version`` (semver)."""
    try:
        return importlib.metadata.version("computebus")
    except importlib.metadata.PackageNotFoundError:
        return UNKNOWN_VERSION


class Tally:
    """One function's requests answered by this worker."""

    __slots__ = ("errors", "last_error", "ns", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.ns = 0
        self.last_error = ""


class Tallies:
    """Per function, what its endpoint's stats report. Only functions ``known`` get a tally, so
    a flood of calls to made-up subjects cannot grow it."""

    def __init__(self, known: Callable[[str, str], object]) -> None:
        self._known = known
        self._of: dict[FunctionKey, Tally] = {}

    def count(self, function: FunctionKey, ns: int, error: ComputeError | None) -> None:
        tally = self._of.get(function)
        if tally is None:
            if self._known(*function) is None:
                return
            tally = self._of[function] = Tally()
        tally.requests += 1
        tally.ns += ns
        if error is not None:
            tally.errors += 1
            tally.last_error = f"{error.status}:{error.message}"  # as nats.go words it

    def of(self, function: FunctionKey) -> Tally | None:
        return self._of.get(function)

    def forget(self, ct: str, ft: str) -> None:
        self._of.pop((ct, ft), None)


@dataclass(frozen=True)
class Instance:
    """Who answers: one worker, as an instance of the ``computebus`` service."""

    id: str
    version: str
    description: str
    metadata: dict[str, str]


def endpoint_of(record: FunctionRecord, production: Revision | None) -> EndpointInfo:
    """One function as an ADR-32 endpoint (its name a valid ADR-32 name: ``<ct>-<service>``)."""
    ct, ft = record.collection_topic, record.service
    metadata = {
        "collection_topic": ct,
        "service": ft,
        "function": record.name,
        "async_subject": subjects.async_subject(ct, ft),
        "aliases": json.dumps(record.aliases, sort_keys=True),
        "latest_revision": str(record.latest_revision),
    }
    if production is not None:
        metadata["alias"] = DEFAULT_ALIAS
        metadata["revision"] = str(production.number)
        metadata["runtime"] = production.runtime
        if production.schema.input is not None:
            metadata["input_schema"] = encode(production.schema.input).decode()
        if production.schema.output is not None:
            metadata["output_schema"] = encode(production.schema.output).decode()
    return EndpointInfo(
        name=f"{ct}-{ft}",
        subject=subjects.function_subject(ct, ft),
        queue_group=subjects.WORKER_QUEUE,
        metadata=metadata,
    )


def endpoints_of(view: RegistryView) -> tuple[list[EndpointInfo], bool]:
    """Every function the worker serves, in a stable order; and whether the view had the
    production revision of each (a record synced ahead of its revision may not, for a moment)."""
    records = sorted(view.cached_functions(), key=lambda r: (r.collection_topic, r.service))
    found, complete = [], True
    for record in records:
        number = record.aliases.get(DEFAULT_ALIAS)
        production = None
        if number is not None:
            production = view.cached_revision(record.collection_topic, record.service, number)
            complete = complete and production is not None
        found.append(endpoint_of(record, production))
    return found, complete


def stats_of(endpoint: EndpointInfo, tally: Tally | None) -> EndpointStats:
    tally = tally or Tally()
    return EndpointStats(
        name=endpoint.name,
        subject=endpoint.subject,
        queue_group=endpoint.queue_group,
        num_requests=tally.requests,
        num_errors=tally.errors,
        last_error=tally.last_error,
        processing_time=tally.ns,
        average_processing_time=average_ns(tally.ns, tally.requests),
    )


def _listed(metadata: dict[str, str], total: int, listed: int) -> dict[str, str]:
    """The service metadata, saying so when the list was cut to fit one message."""
    if listed == total:
        return metadata
    return {**metadata, "endpoints_total": str(total), "endpoints_listed": str(listed)}


def ping_answer(instance: Instance) -> bytes:
    return encode(
        PingResponse(
            name=subjects.SERVICE_NAME,
            id=instance.id,
            version=instance.version,
            metadata=instance.metadata,
        )
    )


def info_answer(instance: Instance, endpoints: list[EndpointInfo], budget: int) -> bytes:
    listed = fit(endpoints, budget)
    return encode(
        InfoResponse(
            name=subjects.SERVICE_NAME,
            id=instance.id,
            version=instance.version,
            description=instance.description,
            metadata=_listed(instance.metadata, len(endpoints), len(listed)),
            endpoints=listed,
        )
    )


def stats_answer(
    instance: Instance, started: str, endpoints: Iterable[EndpointStats], budget: int
) -> bytes:
    every = list(endpoints)
    listed = fit(every, budget)
    return encode(
        StatsResponse(
            name=subjects.SERVICE_NAME,
            id=instance.id,
            version=instance.version,
            started=started,
            metadata=_listed(instance.metadata, len(every), len(listed)),
            endpoints=listed,
        )
    )


class ServiceDiscovery:
    """A worker's ``$SRV`` subscriptions. The endpoint list and the encoded info answer are
    kept until the registry view changes a function (a flood of INFO requests costs one build)."""

    def __init__(
        self, nc: Client, view: RegistryView, tallies: Tallies, instance: Instance
    ) -> None:
        self.nc = nc
        self.view = view
        self.tallies = tallies
        self.instance = instance
        self._started = rfc3339(datetime.now(UTC))
        self._ping = ping_answer(instance)
        self._endpoints: list[EndpointInfo] | None = None
        self._info: bytes | None = None

    async def start(self) -> list[Subscription]:
        """Subscribe; the subscriptions, for the worker to drain with its others."""
        self.view.on_function_changed.append(lambda ct, ft, record: self._stale())
        self.view.on_function_gone.append(lambda ct, ft: self._stale())
        answers = {"PING": self._on_ping, "INFO": self._on_info, "STATS": self._on_stats}
        subs = []
        for verb in subjects.SRV_VERBS:
            for subject in subjects.srv_subjects(verb, self.instance.id):
                subs.append(await self.nc.subscribe(subject, cb=answers[verb]))
        return subs

    def _stale(self) -> None:
        self._endpoints = None
        self._info = None

    def _budget(self) -> int:
        return self.nc.max_payload - REPLY_HEADROOM

    def endpoints(self) -> list[EndpointInfo]:
        if self._endpoints is not None:
            return self._endpoints
        endpoints, complete = endpoints_of(self.view)
        if complete:
            self._endpoints = endpoints
        return endpoints

    async def _answer(self, msg: Msg, data: bytes) -> None:
        # The worker publishes with its own rights: only ever to an inbox.
        if not msg.reply or not msg.reply.startswith(REPLY_PREFIXES):
            return
        try:
            await self.nc.publish(msg.reply, data)
        except Exception as exc:
            log.warning("could not answer %s: %s", msg.subject, exc)

    async def _on_ping(self, msg: Msg) -> None:
        await self._answer(msg, self._ping)

    async def _on_info(self, msg: Msg) -> None:
        info = self._info
        if info is None:
            info = info_answer(self.instance, self.endpoints(), self._budget())
            if self._endpoints is not None:  # complete: kept until a function changes
                self._info = info
        await self._answer(msg, info)

    async def _on_stats(self, msg: Msg) -> None:
        stats = (
            stats_of(e, self.tallies.of((e.metadata["collection_topic"], e.metadata["service"])))
            for e in self.endpoints()
        )
        await self._answer(msg, stats_answer(self.instance, self._started, stats, self._budget()))
