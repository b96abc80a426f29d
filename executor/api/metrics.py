"""The API process's Prometheus metrics, served at ``/metrics``: every invocation it answers
(sync and Async submits) end to end by function and outcome code, the functions it created,
and, read from JetStream at each scrape, what the bus holds (``bus/bus_stats.py``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from nats.aio.client import Client
from prometheus_client import CollectorRegistry, generate_latest

from bus.bus_stats import BusStats, read_bus_stats
from executor.metric_series import (
    NO_FUNCTION,
    Counters,
    Families,
    FunctionLabels,
    Gauges,
    Histograms,
    Key,
    connection_gauges,
)

log = logging.getLogger("computebus")

_BUS_READ_S = 2.0


class ApiMetrics:
    """What one API process counts; ``invoked`` runs once per invoke request."""

    def __init__(
        self, nc: Client, max_functions: int, live_streams: Callable[[], int] = lambda: 0
    ) -> None:
        self.nc = nc
        self.functions = FunctionLabels(max_functions)
        self.invocations = Counters(
            "computebus_api_invocations",
            "Invoke requests this API answered, by function, revision (sync), mode (sync or "
            "async: submitted to the queue) and outcome code (ok, accepted, or the error's code).",
            ("collection", "function", "revision", "mode", "code"),
        )
        self.seconds = Histograms(
            "computebus_api_invoke_seconds",
            "Time from an invoke request to its answer, by function and mode.",
            ("collection", "function", "mode"),
        )
        self.created = Counters(
            "computebus_api_functions_created", "Functions created through this API.", ()
        )
        self.bus = BusStats()
        self.bus_read = 0.0
        families = Families(
            self.invocations,
            self.seconds,
            self.created,
            Gauges(
                "computebus_api_live_streams",
                "Live invocation streams (server-sent events) open on this API.",
                (),
                lambda: [((), float(live_streams()))],
            ),
            *connection_gauges(nc),
            *self._bus_gauges(),
        )
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(families)

    def invoked(
        self, function: tuple[str, str] | None, revision: int, mode: str, code: str, seconds: float
    ) -> None:
        """``function``: None when the request named no function there is."""
        names = NO_FUNCTION if function is None else self.functions.of(*function)
        self.invocations.inc((*names, self.functions.revision(names, revision), mode, code))
        self.seconds.observe((*names, mode), seconds)

    async def exposition(self) -> bytes:
        """The text a scrape gets, with the bus read afresh (its gauges go stale, and
        ``computebus_bus_read_ok`` says 0, when JetStream does not answer in time)."""
        try:
            self.bus = await read_bus_stats(self.nc, _BUS_READ_S)
            self.bus_read = 1.0
        except Exception as exc:
            log.warning("metrics: could not read the bus's streams: %r", exc)
            self.bus_read = 0.0
        return generate_latest(self.registry)

    def _bus_gauges(self) -> list[Gauges]:
        def one(value: float) -> Iterable[tuple[Key, float]]:
            return [((), value)]

        def per_collection(values: dict[str, int]) -> Iterable[tuple[Key, float]]:
            return [((ct,), float(n)) for ct, n in values.items()]

        return [
            Gauges(
                "computebus_bus_read_ok",
                "1 when this scrape read the bus's streams; 0: the bus gauges are from before.",
                (),
                lambda: one(self.bus_read),
            ),
            Gauges(
                "computebus_async_queue_messages",
                "Async invocations in the queue: waiting, running, or waiting for a retry.",
                (),
                lambda: one(self.bus.async_messages),
            ),
            Gauges(
                "computebus_async_oldest_age_seconds",
                "Age of the oldest Async invocation still in the queue (0 when it is empty).",
                (),
                lambda: one(self.bus.async_oldest_age_s),
            ),
            Gauges(
                "computebus_async_redelivered",
                "Async messages delivered more than once and not yet acked (a retry, a lost "
                "worker).",
                (),
                lambda: one(self.bus.async_redelivered),
            ),
            Gauges(
                "computebus_async_ack_pending",
                "Async messages delivered to a worker and not yet acked.",
                (),
                lambda: one(self.bus.async_ack_pending),
            ),
            Gauges(
                "computebus_monitor_stream_bytes",
                "Bytes of monitor records each collection's stream holds.",
                ("collection",),
                lambda: per_collection(self.bus.monitor_bytes),
            ),
            Gauges(
                "computebus_monitor_stream_messages",
                "Monitor records each collection's stream holds.",
                ("collection",),
                lambda: per_collection(self.bus.monitor_messages),
            ),
            Gauges(
                "computebus_dead_letters_stored",
                "Dead letters each collection's stream holds.",
                ("collection",),
                lambda: per_collection(self.bus.dead_letters),
            ),
        ]
