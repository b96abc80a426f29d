"""Managing triggers: checking a create body against the function it names, storing it, switching
it off and on (a subject trigger's stream sourced or not: bus/subject_triggers.py), deleting it
(alone or with its function, streams too); each change publishes the function's
``event.updated`` with its ``triggers``. Also which revision an HTTP route's request runs."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Callable

import msgspec
from msgspec import UNSET
from nats.aio.client import Client

from bus import subjects
from bus.registry_view import RegistryView
from bus.subject_triggers import TriggerStreams
from bus.triggers import TriggerStore
from executor.functions.route_table import RouteTable
from executor.functions.views import function_view
from executor.tasks import TaskSet
from schemas import ids
from schemas.codec import decode_as, encode
from schemas.errors import Conflict, FunctionNotFound, InvalidRequest, detail
from schemas.functions import FunctionRecord
from schemas.ids import DEFAULT_ALIAS
from schemas.rates import check_rate
from schemas.triggers import (
    TRIGGER_SPEC,
    FunctionTarget,
    HttpTrigger,
    HttpTriggerSpec,
    SubjectTrigger,
    SubjectTriggerSpec,
    Trigger,
    check_route_path,
    check_source,
    check_traffic_shape,
    subjects_collide,
)


def new_trigger_id() -> str:
    return f"trg_{secrets.token_hex(8)}"


def pick_revision(traffic: dict[str, int], invocation_id: str) -> int:
    """The revision of ``traffic`` an invocation runs: its id (random) hashed to 0..99 and
    placed on the weights laid end to end in revision order, so the split holds on average and
    any one choice can be checked from the id."""
    point = int.from_bytes(hashlib.sha256(invocation_id.encode()).digest()[:8], "big") % 100
    for number, weight in sorted((int(k), w) for k, w in traffic.items()):
        if point < weight:
            return number
        point -= weight
    raise ValueError("traffic weights do not add up to 100")


class Triggers:
    """Create, switch, delete and route triggers; the route table follows the store's watch."""

    def __init__(
        self, store: TriggerStore, view: RegistryView, nc: Client, streams: TriggerStreams
    ) -> None:
        self.store = store
        self.view = view
        self.nc = nc
        self.streams = streams
        self.routes = RouteTable()
        store.on_change.append(self.routes.changed)
        self._sourcing = TaskSet("subject trigger sources")
        self._resource = False  # another change came while sourcing: source again after
        self._sourcing_lock = asyncio.Lock()

    def follow(self) -> None:
        """Source the Async stream as the triggers are, now and after every change heard (call
        once the store's copy is whole: a partial one would unsource the rest)."""
        self.store.on_change.append(lambda _id, _trigger: self._source_soon())
        self._source_soon()

    async def close(self) -> None:
        await self._sourcing.drain(5.0)

    def _source_soon(self) -> None:
        if len(self._sourcing):
            self._resource = True
        else:
            self._sourcing.spawn(self._source_until_still())

    async def _source_until_still(self) -> None:
        self._resource = True
        while self._resource:
            self._resource = False
            await self._source()

    async def _source(self) -> None:
        async with self._sourcing_lock:  # the copy read inside, so the last write is the newest
            on = [t for t in self.store.all() if isinstance(t, SubjectTrigger) and t.enabled]
            await self.streams.source(on)

    async def create(self, data: bytes, authorize: Callable[[str], None]) -> Trigger:
        """A new trigger from a create body; ``authorize`` raises unless the caller may deploy
        in the collection it names."""
        spec = decode_as(TRIGGER_SPEC, data)
        ct = spec.function.collection_topic
        if not ids.COLLECTION_TOPIC.fullmatch(ct):
            reason = f"must match {ids.COLLECTION_TOPIC.pattern}"
            raise InvalidRequest(
                f"/function/collection_topic {reason}",
                [detail("/function/collection_topic", reason)],
            )
        authorize(ct)
        record = await self._function(ct, spec.function.service)
        if isinstance(spec, SubjectTriggerSpec):
            made = await self._subject_trigger(record, spec)
            await self.announce(record.collection_topic, record.service)
            return made
        trigger = await self._http_route(record, spec)
        holder = await self.store.claimed_by(trigger.method, trigger.path)
        if holder is not None and await self.view.function(*holder) is None:
            await self.store.release_claim(trigger.method, trigger.path)  # an orphan's
        await self.store.create(trigger)
        await self.announce(record.collection_topic, record.service)
        return trigger

    async def _function(self, ct: str, ref: str) -> FunctionRecord:
        service = await self.view.service_of(ct, ref)
        record = await self.view.function(ct, service) if service is not None else None
        if record is None:
            raise FunctionNotFound(
                f"function {ct}/{ref} does not exist (no such name or service id)",
                [detail("/function/service", "no such function")],
            )
        return record

    async def _subject_trigger(
        self, record: FunctionRecord, spec: SubjectTriggerSpec
    ) -> SubjectTrigger:
        source = check_source(spec.source)
        if spec.alias not in record.aliases:
            reason = f"function {record.collection_topic}/{record.service} has no such alias"
            raise InvalidRequest(f"/alias: {reason}: {spec.alias}", [detail("/alias", reason)])
        for other in self.store.all():
            if isinstance(other, SubjectTrigger) and subjects_collide(source, other.source):
                reason = f"overlaps {other.source}, the source of trigger {other.id}"
                raise Conflict(f"/source: {source} {reason}", [detail("/source", reason)])
        now = int(time.time())
        trigger = SubjectTrigger(
            id=new_trigger_id(),
            function=FunctionTarget(
                collection_topic=record.collection_topic, service=record.service
            ),
            source=source,
            alias=spec.alias,
            enabled=spec.enabled,
            created=now,
            modified=now,
        )
        await self.streams.create(trigger)  # the server's check: no other stream has it
        try:
            await self.store.create(trigger)
        except BaseException:
            await self.streams.delete(trigger)
            raise
        await self._source()
        return trigger

    async def _http_route(self, record: FunctionRecord, spec: HttpTriggerSpec) -> HttpTrigger:
        ct, ft = record.collection_topic, record.service
        path = check_route_path(spec.path)
        check_rate(spec.limits.rps, spec.limits.burst, "/limits")
        if spec.traffic is UNSET:
            numbers = [record.aliases.get(DEFAULT_ALIAS, record.latest_revision)]
        else:
            numbers = list(check_traffic_shape(spec.traffic))
        timeouts = []
        for number in numbers:
            revision = await self.view.revision(ct, ft, number)
            if revision is None:
                where = f"/traffic/{number}"
                raise InvalidRequest(
                    f"{where}: function {ct}/{ft} has no revision {number}",
                    [detail(where, "no such revision")],
                )
            timeouts.append(revision.timeout)
        if spec.timeout is not UNSET and not 1 <= spec.timeout <= min(timeouts):
            reason = f"must be 1 to {min(timeouts)} ms (the function's timeout), got {spec.timeout}"
            raise InvalidRequest(f"/timeout: {reason}", [detail("/timeout", reason)])
        now = int(time.time())
        return HttpTrigger(
            id=new_trigger_id(),
            function=FunctionTarget(collection_topic=ct, service=ft),
            method=spec.method,
            path=path,
            public=spec.public,
            limits=spec.limits,
            timeout=spec.timeout,
            traffic=spec.traffic,
            enabled=spec.enabled,
            created=now,
            modified=now,
        )

    async def set_enabled(self, trigger: Trigger, enabled: bool) -> Trigger:
        changed = msgspec.structs.replace(trigger, enabled=enabled, modified=int(time.time()))
        switched = isinstance(changed, SubjectTrigger) and enabled != trigger.enabled
        if switched and enabled and isinstance(changed, SubjectTrigger):
            await self.streams.purge(changed)  # messages published while off are dropped
        await self.store.update(changed)
        if switched:
            await self._source()
        await self.announce(trigger.function.collection_topic, trigger.function.service)
        return changed

    async def delete(self, trigger: Trigger) -> None:
        await self.store.delete(trigger)
        if isinstance(trigger, SubjectTrigger):
            await self._source()
            await self.streams.delete(trigger)
        await self.announce(trigger.function.collection_topic, trigger.function.service)

    async def function_deleted(self, ct: str, ft: str) -> None:
        """Its triggers go with it (no event: the function's ``deleted`` says it all)."""
        gone = [
            t for t in await self.store.delete_of_function(ct, ft) if isinstance(t, SubjectTrigger)
        ]
        if gone:
            await self._source()
        for trigger in gone:
            await self.streams.delete(trigger)

    async def announce(self, ct: str, ft: str) -> None:
        """``event.updated`` of the function, with its triggers as they are now."""
        record = await self.view.function(ct, ft)
        if record is None:
            return
        number = record.aliases.get(DEFAULT_ALIAS, record.latest_revision)
        revision = await self.view.revision(ct, ft, number)
        if revision is None:
            return
        view = function_view(record, revision, "updated")
        view.triggers = self.store.of_function(ct, ft)
        await self.nc.publish(subjects.event_subject(ct, ft, "updated"), encode(view))
        await self.nc.flush()
