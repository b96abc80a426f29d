"""The worker's Prometheus metrics: every invocation it runs (sync over HTTP or NATS, Async),
its handler processes, its Async queue work; served on its own port
(``COMPUTEBUS_WORKER_METRICS_PORT``) by prometheus-client's server, in a thread of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from importlib.metadata import version

from nats.aio.client import Client
from prometheus_client import CollectorRegistry, start_http_server

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
from executor.runtime.spares import Spares
from executor.settings import Settings, SettingsError, env_name
from executor.worker.revisions import PreparedRevisions
from schemas.errors import ComputeError
from schemas.headers import Call

log = logging.getLogger("computebus")

_FUNCTION = ("collection", "function", "revision", "via", "code")


def via(call: Call) -> str:
    """``async``, ``http`` (through an API: a token or a public function) or ``nats``."""
    if call.invocation_type == "Async":
        return "async"
    if call.caller is not None and call.caller.via != "nats":
        return "http"
    return "nats"


class WorkerMetrics:
    """What a worker counts; the hot path calls ``invoked`` once per invocation."""

    def __init__(self, max_functions: int) -> None:
        self.functions = FunctionLabels(max_functions)
        self.invocations = Counters(
            "computebus_worker_invocations",
            "Invocations this worker ran to an outcome, by function, revision, path "
            "(http, nats, async) and outcome code (ok or the error's code).",
            _FUNCTION,
        )
        self.errors = Counters(
            "computebus_worker_errors",
            "Invocations that ended in an error (any code but ok), labelled as invocations.",
            _FUNCTION,
        )
        self.handler_seconds = Histograms(
            "computebus_worker_handler_seconds",
            "Time the handler process took to answer, by function, revision and path.",
            _FUNCTION[:4],
        )
        self.wait_seconds = Histograms(
            "computebus_worker_wait_seconds",
            "Time from arrival at the worker (sync) or from the queue's store (Async) until the "
            "handler started: validation, a process to run on, the queue itself.",
            ("collection", "function", "via"),
        )
        self.duration_seconds = Histograms(
            "computebus_worker_invocation_seconds",
            "Time from arrival at the worker to the outcome (the record's duration_ms).",
            _FUNCTION[:4],
        )
        self.cold_starts = Counters(
            "computebus_worker_cold_starts",
            "Handler processes started for a revision, by runtime and whether a spare was taken.",
            ("runtime", "spare"),
        )
        self.cold_start_seconds = Histograms(
            "computebus_worker_cold_start_seconds",
            "Time to get a new handler process for a revision (a spare's assignment or a start).",
            ("runtime", "spare"),
        )
        self.killed = Counters(
            "computebus_worker_processes_killed",
            "Handler processes killed or lost during an invocation, by runtime and reason "
            "(timeout, oom, crash).",
            ("runtime", "reason"),
        )
        self.async_retries = Counters(
            "computebus_worker_async_retries",
            "Async runs that failed with a retryable error and were handed back for another.",
            ("collection", "function"),
        )
        self.dead_letters = Counters(
            "computebus_worker_dead_letters",
            "Async invocations that failed for good and went to the dead-letter stream.",
            ("collection", "function"),
        )
        self.expired = Counters(
            "computebus_worker_async_expired",
            "Async invocations still queued past their Compute-Deadline (not run).",
            ("collection", "function"),
        )
        self.throttles = Counters(
            "computebus_worker_throttles",
            "Sync invocations this worker refused for want of room (at capacity, the function at "
            "its max_concurrency, shutting down), whether another worker then took them or not.",
            ("collection", "function"),
        )
        self.async_running = 0

    def invoked(
        self,
        call: Call,
        revision: int,
        error: ComputeError | None,
        duration_s: float,
        wait_s: float | None,
        handler_s: float | None,
    ) -> None:
        path = via(call)
        names = self.functions.of(call.collection_topic, call.service)
        short = (*names, self.functions.revision(names, revision), path)
        code = "ok" if error is None else error.code
        key = (*short, code)
        self.invocations.inc(key)
        if error is not None:
            self.errors.inc(key)
        self.duration_seconds.observe(short, duration_s)
        if handler_s is not None:
            self.handler_seconds.observe(short, handler_s)
        if wait_s is not None:
            self.wait_seconds.observe((*names, path), wait_s)

    def spawned(self, runtime: str, spare: bool, seconds: float) -> None:
        key = (runtime, "yes" if spare else "no")
        self.cold_starts.inc(key)
        self.cold_start_seconds.observe(key, seconds)

    def dead_lettered(self, ct: str, ft: str) -> None:
        self.dead_letters.inc(self.functions.of(ct, ft))

    def throttled(self, function: tuple[str, str] | None) -> None:
        """``function``: None when the subject names no function there is."""
        names = NO_FUNCTION if function is None else self.functions.of(*function)
        self.throttles.inc(names)

    def unresolved(self, call: Call, error: ComputeError) -> None:
        """An invocation of no function (or no such revision): one series for them all."""
        self.invocations.inc((*NO_FUNCTION, "", via(call), error.code))
        self.errors.inc((*NO_FUNCTION, "", via(call), error.code))

    def retried(self, ct: str, ft: str) -> None:
        self.async_retries.inc(self.functions.of(ct, ft))

    def expired_in_queue(self, ct: str, ft: str) -> None:
        self.expired.inc(self.functions.of(ct, ft))

    def registry(self, state: WorkerState, nc: Client) -> CollectorRegistry:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(
            Families(
                self.invocations,
                self.errors,
                self.duration_seconds,
                self.handler_seconds,
                self.wait_seconds,
                self.cold_starts,
                self.cold_start_seconds,
                self.killed,
                self.async_retries,
                self.dead_letters,
                self.expired,
                self.throttles,
                *state.gauges(self, nc),
            )
        )
        return registry


class WorkerState:
    """The gauges read at each scrape, from the worker's parts (passed in as readers)."""

    def __init__(
        self,
        worker_id: str,
        isolation: str,
        settings: Settings,
        processes: Callable[[], Iterable[tuple[Key, float]]],
        running: Callable[[], int],
    ) -> None:
        self.worker_id, self.isolation, self.settings = worker_id, isolation, settings
        self.processes, self.running = processes, running

    def gauges(self, metrics: WorkerMetrics, nc: Client) -> list[Gauges]:
        settings = self.settings

        def one(value: float) -> Iterable[tuple[Key, float]]:
            return [((), value)]

        return [
            Gauges(
                "computebus_worker_info",
                "1, labelled with the worker's id, version and sandbox level.",
                ("worker", "version", "isolation"),
                lambda: [((self.worker_id, version("computebus"), self.isolation), 1.0)],
            ),
            Gauges(
                "computebus_worker_processes",
                "Handler processes alive, by runtime and state (warm: a revision's; spare).",
                ("runtime", "state"),
                self.processes,
            ),
            Gauges(
                "computebus_worker_in_flight",
                "Invocations holding a handler process now.",
                (),
                lambda: one(self.running()),
            ),
            Gauges(
                "computebus_worker_capacity",
                "Invocations the worker runs at once (COMPUTEBUS_WORKER_CONCURRENCY).",
                (),
                lambda: one(settings.worker_concurrency),
            ),
            Gauges(
                "computebus_worker_async_in_flight",
                "Async invocations the worker is settling now.",
                (),
                lambda: one(metrics.async_running),
            ),
            Gauges(
                "computebus_worker_async_capacity",
                "Async invocations one worker settles at once (COMPUTEBUS_ASYNC_CONCURRENCY).",
                (),
                lambda: one(settings.async_concurrency),
            ),
            *connection_gauges(nc),
        ]


def process_counts(revisions: PreparedRevisions, spares: Spares) -> list[tuple[Key, float]]:
    warm = revisions.processes_by_runtime().items()
    counts: list[tuple[Key, float]] = [((runtime, "warm"), float(n)) for runtime, n in warm]
    counts += [((runtime, "spare"), float(n)) for runtime, n in spares.by_runtime().items()]
    return counts


class MetricsServer:
    """prometheus-client's HTTP server for ``registry``, in its own thread, until ``close``."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            raise SettingsError(
                f"{env_name('worker_metrics_port')}: cannot serve metrics on {host}:{port}: "
                f"{exc.strerror or exc}"
            ) from None
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self._server.server_address[1]}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
