"""The worker: takes invocations from NATS (queue group), runs them, replies, drains on stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Coroutine
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from bus import subjects
from bus.caller_seal import CallerSeal
from bus.nats_users import REPLY_PREFIXES
from bus.registry_view import RegistryView
from bus.result_events import ResultEvents
from bus.service_discovery import Instance, ServiceDiscovery, Tallies, package_version
from executor.settings import Settings
from executor.tasks import TaskSet
from executor.worker.invocation_log import InvocationLog
from executor.worker.invoke import Invoker, Outcome
from executor.worker.metrics import WorkerMetrics
from executor.worker.overflow import Intake, Route, pass_on, route_of
from executor.worker.revisions import PreparedRevisions
from executor.worker.settle import AsyncConsumer
from schemas import ids, micro
from schemas.codec import decoder_for, encode
from schemas.control import (
    HEARTBEAT_S,
    TAKEN_AFTER_S,
    Alive,
    Blocker,
    ProbeReply,
    ProbeRequest,
    RegistrySync,
    SyncAck,
    WorkerInfo,
)
from schemas.errors import ComputeError, FunctionNotFound, InternalError, InvalidRequest, Overloaded
from schemas.functions import FunctionRecord
from schemas.headers import (
    H_INVOCATION_ID,
    H_TAKEN,
    Call,
    call_from_headers,
    error_headers,
    new_invocation_id,
)
from schemas.invocations import CallerInfo

log = logging.getLogger("computebus.worker")

_RECORD_ACK_S = 10.0
_RECORD_TRIES = 4
_RECORD_RETRY_S = 0.5
# Invocations a worker holds at most, waiting or running, per slot of WORKER_CONCURRENCY (a bound
# on the payloads it keeps in memory, whatever the number of functions).
_WAITING_PER_SLOT = 8
_HAND_OVER_GRACE_S = 5.0


def max_concurrency(record: FunctionRecord | None, settings: Settings) -> int:
    """A function's invocations in flight on one worker at most: its own limit, or the default."""
    if record is not None and record.limits.max_concurrency is not None:
        return record.limits.max_concurrency
    return settings.function_concurrency


# Room for headers beside a reply in one message; results are capped at max_payload minus this.


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(2).hex()}"


class Worker:
    """A worker's subscriptions: invoke requests (queue group), pings, load checks, syncs."""

    def __init__(
        self,
        nc: Client,
        view: RegistryView,
        invoker: Invoker,
        revisions: PreparedRevisions,
        settings: Settings,
        consumer: AsyncConsumer,
        worker_id: str,
        seal: CallerSeal,
        events: ResultEvents,
        metrics: WorkerMetrics,
        metrics_url: str,
    ) -> None:
        self.metrics, self.metrics_url = metrics, metrics_url
        self.nc = nc
        self.events = events
        self.seal = seal
        self.view = view
        self.consumer = consumer
        self.invoker = invoker
        self.revisions = revisions
        self.settings = settings
        self.id = worker_id
        self._subs: list[Subscription] = []
        self._tasks = TaskSet("invocation")  # waiting or running
        self._in_flight: dict[tuple[str, str], int] = {}  # per function: its share of _tasks
        self._chores = TaskSet("worker chore")  # load checks, retiring processes
        self._handovers = TaskSet("hand-over")  # invocations passed to other workers
        self.intake = Intake(nc, self._on_invoke)
        self._heartbeat: asyncio.Task[None] | None = None
        self._alive_for = -1
        self._alive_bytes = b""
        self._accepting = False
        self._invocations = InvocationLog(view, worker_id)
        self.tallies = Tallies(view.cached_function)  # $SRV.STATS: per function, its requests

    async def start(self) -> None:
        self._accepting = True
        await self.intake.open()
        self._heartbeat = asyncio.create_task(self._beat())
        self._subs.append(await self.nc.subscribe(subjects.WORKER_PING, cb=self._on_ping))
        self._subs.append(
            await self.nc.subscribe(
                subjects.WORKER_PROBE, queue=subjects.WORKER_QUEUE, cb=self._on_probe
            )
        )
        self._subs.append(await self.nc.subscribe(subjects.WORKER_SYNC, cb=self._on_sync))
        discovery = ServiceDiscovery(self.nc, self.view, self.tallies, self._instance())
        self._subs += await discovery.start()
        await self.consumer.start()
        self.view.on_function_gone.append(self._function_gone)
        self.view.on_function_changed.append(self._function_changed)
        self.view.on_revision_gone.append(self._revision_gone)

    async def _on_ping(self, msg: Msg) -> None:
        if msg.reply:
            sandbox = self.revisions.sandbox
            answer = WorkerInfo(
                worker=self.id,
                isolation=sandbox.level,
                isolation_gaps=list(sandbox.gaps),
                runtimes={n: i.version for n, i in sandbox.interpreters.items()},
                metrics=self.metrics_url,
            )
            await msg.respond(encode(answer))

    def _instance(self) -> Instance:
        """This worker as an instance of the computebus micro service."""
        return Instance(
            id=micro.instance_id(self.id),
            version=package_version(),
            description=(
                "computebus worker: runs the functions of the registry, request-reply on "
                f"{subjects.INVOKE_WILDCARD} in queue group {subjects.WORKER_QUEUE}"
            ),
            metadata={
                "role": "worker",
                "worker": self.id,
                "isolation": self.revisions.sandbox.level,
            },
        )

    async def _on_sync(self, msg: Msg) -> None:
        try:
            sync = decoder_for(RegistrySync).decode(msg.data)
            record = decoder_for(FunctionRecord).decode(sync.record)
        except msgspec.DecodeError as exc:
            log.warning("ignoring an unreadable registry sync: %s", exc)
            return
        self.view.remember(sync.collection_topic, sync.service, sync.seq, record)
        if msg.reply:
            await msg.respond(encode(SyncAck()))

    async def _on_probe(self, msg: Msg) -> None:
        if msg.reply:
            self._background(self._probe(msg))

    async def _probe(self, msg: Msg) -> None:
        try:
            ask = decoder_for(ProbeRequest).decode(msg.data)
            blockers = await self.revisions.probe(ask.collection_topic, ask.service, ask.revision)
        except Exception as exc:
            log.exception("load check failed")
            blockers = [Blocker(reason=InternalError.code, message=str(exc))]
        await msg.respond(encode(ProbeReply(blockers=blockers)))

    async def _on_invoke(self, msg: Msg) -> None:
        if not msg.reply:
            log.warning("dropping an invocation on %s without a reply subject", msg.subject)
            return
        if not msg.reply.startswith(REPLY_PREFIXES):
            # The worker publishes with its own rights: answering any subject the caller
            # names would let a client write JetStream's API or internal buckets through it.
            log.debug("dropping an invocation on %s: its reply is not an inbox", msg.subject)
            return
        parsed = subjects.parse_function_subject(msg.subject)
        function = (parsed[0], parsed[1]) if parsed is not None else ("", "")
        refused = self._admission(function)
        if refused is not None:
            if not self._has_room():
                self.intake.full()
            onward = route_of(msg).onward(self.id)
            if onward is not None and len(self._handovers) < self._max_held():
                self._handovers.spawn(self._hand_over(msg, function, onward, refused))
                return  # counted by the worker that answers it
            await self._refuse(msg, function, refused, 0)
            return
        self._in_flight[function] = self._in_flight.get(function, 0) + 1
        self._tasks.spawn(self._handle(msg, function))

    def _max_held(self) -> int:
        return self.settings.worker_concurrency * _WAITING_PER_SLOT

    def _has_room(self) -> bool:
        return (
            self._accepting
            and self.invoker.running < self.settings.worker_concurrency
            and len(self._tasks) < self._max_held()
        )

    async def _hand_over(
        self, msg: Msg, function: tuple[str, str], route: Route, refused: Overloaded
    ) -> None:
        """Another worker's answer, or ``refused`` when none has room either."""
        timeout_s = self.settings.max_timeout_ms / 1000 + _HAND_OVER_GRACE_S
        started = time.perf_counter_ns()
        answer = await pass_on(self.nc, msg, route, timeout_s)
        if answer is None:
            await self._refuse(msg, function, refused, time.perf_counter_ns() - started)
            return
        assert msg.reply
        await self.nc.publish(msg.reply, answer.data, headers=answer.headers)

    async def _refuse(
        self, msg: Msg, function: tuple[str, str], refused: Overloaded, spent_ns: int
    ) -> None:
        """Answer that no worker had room (a throttle: counted where the caller hears it)."""
        known = self.view.cached_function(*function) is not None
        self.metrics.throttled(function if known else None)
        self.tallies.count(function, spent_ns, refused)
        invocation_id = msg.headers.get(H_INVOCATION_ID, "") if msg.headers else ""
        await self._reply_error(msg, refused, invocation_id)

    def _admission(self, function: tuple[str, str]) -> Overloaded | None:
        """Why this invocation cannot be taken now, if it cannot. Calls that only wait for one of
        their function's processes count against that function, not against the worker."""
        if not self._accepting:
            return Overloaded("the worker is shutting down; retry shortly")
        if self.invoker.running >= self.settings.worker_concurrency:
            return Overloaded("the worker is at capacity; retry shortly")
        if len(self._tasks) >= self._max_held():
            return Overloaded("the worker holds too many waiting invocations; retry shortly")
        limit = max_concurrency(self.view.cached_function(*function), self.settings)
        if self._in_flight.get(function, 0) >= limit:
            ct, ft = function
            return Overloaded(
                f"function {ct}/{ft} already has {limit} invocations in flight on this worker "
                "(its limits.max_concurrency, else COMPUTEBUS_FUNCTION_CONCURRENCY); retry shortly"
            )
        return None

    def _leave(self, function: tuple[str, str]) -> None:
        left = self._in_flight.pop(function, 1) - 1
        if left > 0:
            self._in_flight[function] = left

    def _alive(self) -> bytes:
        """This worker's heartbeat (made again only after a reconnect: it is sent per call)."""
        reconnects = int(self.nc.stats["reconnects"])
        if self._alive_for != reconnects:
            self._alive_for = reconnects
            self._alive_bytes = encode(Alive(worker=self.id, reconnects=reconnects))
        return self._alive_bytes

    async def _beat(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.nc.publish(subjects.WORKER_ALIVE, self._alive())
            await asyncio.sleep(HEARTBEAT_S)

    async def _handle(self, msg: Msg, function: tuple[str, str]) -> None:
        started = time.perf_counter_ns()
        headers = msg.headers or {}
        invocation_id, caller = self._invocation_id(headers)
        taken = headers.get(H_TAKEN)
        saying_taken = None
        if taken and taken.startswith(REPLY_PREFIXES):  # the caller watches this worker then
            saying_taken = asyncio.get_running_loop().call_later(
                TAKEN_AFTER_S, self._say_taken, taken
            )
        try:
            try:
                call = self._call_from(msg, headers, invocation_id, caller)
                outcome = await self.invoker.invoke(call)
            except ComputeError as exc:
                outcome = Outcome(None, exc)
            except Exception:
                log.exception("invocation %s failed inside the worker", invocation_id)
                outcome = Outcome(None, InternalError("the worker failed to run the invocation"))
            # Counted before the reply goes, so a caller that asks $SRV.STATS next sees it.
            self.tallies.count(function, time.perf_counter_ns() - started, outcome.error)
            await self._reply(msg, outcome, invocation_id)
            self._invocations.done(outcome, function, invocation_id)
        finally:  # once answered it is no longer in flight (its record is stored after)
            if saying_taken is not None:
                saying_taken.cancel()
            self._leave(function)
            if self._has_room():
                self.intake.room()
        await self._finish_record(outcome)

    async def _reply(self, msg: Msg, outcome: Outcome, invocation_id: str) -> None:
        try:
            if outcome.error is None:
                assert outcome.result is not None
                await self.nc.publish(
                    msg.reply, outcome.result, headers={H_INVOCATION_ID: invocation_id}
                )
            else:
                await self._reply_error(msg, outcome.error, invocation_id)
        except Exception:  # the caller would otherwise wait for its own timeout
            log.exception("could not reply to invocation %s", invocation_id)
            failure = InternalError("the worker could not send the reply")
            with contextlib.suppress(Exception):
                await self._reply_error(msg, failure, invocation_id)

    def _say_taken(self, taken: str) -> None:
        self._chores.spawn(self.nc.publish(taken, self._alive()))

    def _invocation_id(self, headers: dict[str, str]) -> tuple[str, CallerInfo]:
        """The API's id for the call when it sealed it; a fresh one for a call straight over NATS
        (a client naming an id could otherwise overwrite that invocation's record). And who
        called, as the seal (or nats-server) says."""
        given = headers.get(H_INVOCATION_ID, "")
        caller = self.seal.caller(headers, given)
        if given and caller.via != "nats":
            return given, caller
        return new_invocation_id(), caller

    def _call_from(
        self, msg: Msg, headers: dict[str, str], invocation_id: str, caller: CallerInfo
    ) -> Call:
        parsed = subjects.parse_function_subject(msg.subject)
        if parsed is None:
            raise InvalidRequest(f"{msg.subject} is not a function subject")
        if not ids.SERVICE_ID.fullmatch(parsed[1]):
            raise FunctionNotFound(
                f"no function {parsed[0]}/{parsed[1]}: a function's subject names its service id "
                "(compute_asset.service, nine digits), not its name"
            )
        return call_from_headers(
            parsed[0], parsed[1], msg.data, headers, invocation_id, caller=caller
        )

    async def _reply_error(self, msg: Msg, error: ComputeError, invocation_id: str) -> None:
        await self.nc.publish(
            msg.reply, encode(error.to_body()), headers=error_headers(error, invocation_id)
        )

    async def _finish_record(self, outcome: Outcome) -> None:
        """Store the record, then announce it on the result subject (readable by then)."""
        record = outcome.record
        data = await self._store_record(outcome)
        if record is None or data is None:
            return
        await self.events.publish(
            subjects.result_subject(record.collection_topic, record.service, record.status), data
        )

    async def _store_record(self, outcome: Outcome) -> bytes | None:
        """The record's bytes once stored; tried again while its server is away (the same
        record twice is harmless: a record's subject keeps only its last)."""
        for attempt in range(1, _RECORD_TRIES + 1):
            try:
                stored = await self.invoker.store(outcome)
                if stored is None:
                    return None
                await asyncio.wait_for(stored.ack, _RECORD_ACK_S)
                return stored.data
            except Exception as exc:
                if attempt == _RECORD_TRIES:
                    invocation_id = outcome.record.invocation_id if outcome.record else "?"
                    log.error("monitor record %s was not stored: %r", invocation_id, exc)
                    return None
                await asyncio.sleep(attempt * _RECORD_RETRY_S)
        return None

    def _function_gone(self, ct: str, ft: str) -> None:
        self.tallies.forget(ct, ft)
        self._background(self.revisions.forget_function(ct, ft))

    def _function_changed(self, ct: str, ft: str, record: FunctionRecord) -> None:
        self._background(self.revisions.retire_unaliased(ct, ft, set(record.aliases.values())))

    def _revision_gone(self, ct: str, ft: str, number: int) -> None:
        self._background(self.revisions.retire_revision(ct, ft, number))

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        self._chores.spawn(work)

    def in_flight(self) -> tuple[int, int]:
        """Sync and Async invocations this worker holds now (running or waiting)."""
        return len(self._tasks), self.consumer.dispatcher.in_flight

    async def drain(self, deadline_s: float) -> None:
        """Stop taking work, let what is running finish within ``deadline_s``, then stop.

        Draining the subscriptions first still runs the messages already delivered to us; Async
        invocations still running at the deadline are handed back to the queue.
        """
        await self.intake.close()
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.drain()  # type: ignore[no-untyped-call]
        self._accepting = False
        stopping = asyncio.create_task(self.consumer.stop(deadline_s))
        await asyncio.gather(
            self._tasks.drain(deadline_s),
            self._chores.drain(deadline_s),
            self._handovers.drain(deadline_s),
        )
        await stopping
        await self.revisions.instances.close()
        if self._heartbeat is not None:  # beating to the end: the API watches what still runs
            self._heartbeat.cancel()
