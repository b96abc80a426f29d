"""A function's schedules: create (checked whole first), list, get, delete; each change
publishes the function on its ``.event.updated`` subject, with its schedules."""

from __future__ import annotations

import time

import msgspec
from msgspec import UNSET
from nats.aio.client import Client

from bus import subjects
from bus.registry_view import RegistryView
from bus.schedules import ScheduleStream, StoredSchedule, every_pattern, interval_of
from executor.functions.views import function_view
from schemas.codec import encode, json_decoder
from schemas.errors import Conflict, FunctionNotFound, InvalidInput, NotFound, detail
from schemas.functions import FunctionView
from schemas.ids import DEFAULT_ALIAS
from schemas.schedules import SCHEDULE_NAME, ScheduleRequest, ScheduleView, checked
from schemas.validation import CompiledSchema
from schemas.validation_guards import ValidationTooSlow

_VALIDATION_BUDGET_S = 2.0


class Schedules:
    """The schedules of functions, stored as JetStream message schedules (bus/schedules.py)."""

    def __init__(self, nc: Client, stream: ScheduleStream, view: RegistryView) -> None:
        self.nc = nc
        self.stream = stream
        self.view = view

    async def create(
        self, ct: str, ft: str, request: ScheduleRequest, payload: bytes
    ) -> ScheduleView:
        """``payload`` is the request's (a string that holds JSON already decoded)."""
        wanted = checked(request)
        await self._check_payload(ct, ft, payload)
        pattern = every_pattern(wanted.every) if isinstance(wanted.every, str) else wanted.cron
        assert isinstance(pattern, str)
        timezone = wanted.timezone if isinstance(wanted.timezone, str) else None
        stored = StoredSchedule(wanted.name, pattern, timezone, payload, int(time.time()))
        if not await self.stream.create(ct, ft, stored):
            raise Conflict(
                f"function {ct}/{ft} already has a schedule named {wanted.name!r}",
                [detail("/name", "already taken by another schedule of this function")],
            )
        await self._announce(ct, ft)
        return schedule_view(ct, ft, stored)

    async def list(self, ct: str, ft: str) -> list[ScheduleView]:
        return [schedule_view(ct, ft, s) for s in await self.stream.list(ct, ft)]

    async def get(self, ct: str, ft: str, name: str) -> ScheduleView:
        found = await self.stream.get(ct, ft, name) if _valid_name(name) else None
        if found is None:
            raise NotFound(f"function {ct}/{ft} has no schedule named {name!r}")
        return schedule_view(ct, ft, found)

    async def delete(self, ct: str, ft: str, name: str) -> ScheduleView:
        view = await self.get(ct, ft, name)
        await self.stream.delete(ct, ft, name)
        await self._announce(ct, ft)
        return view

    async def remove_function(self, ct: str, ft: str) -> None:
        """A deleted function's schedules go with it."""
        await self.stream.delete_all(ct, ft)

    async def _check_payload(self, ct: str, ft: str, payload: bytes) -> None:
        """Against production's input schema now, rather than failing at every tick."""
        _, revision = await self.view.resolve(ct, ft, alias=DEFAULT_ALIAS, revision=None)
        schema = CompiledSchema(revision.schema.input)
        value = json_decoder.decode(payload)
        try:
            problems = schema.errors(value, time.monotonic() + _VALIDATION_BUDGET_S)
        except ValidationTooSlow as exc:
            problems = [detail("/payload", str(exc))]
        if problems:
            where = [detail("/payload" + p["path"].rstrip("/"), p["message"]) for p in problems]
            raise InvalidInput("payload does not match the function's input schema", where)

    async def _announce(self, ct: str, ft: str) -> None:
        view = await self.function_view(ct, ft, "updated")
        await self.nc.publish(subjects.event_subject(ct, ft, "updated"), encode(view))
        await self.nc.flush()

    async def function_view(self, ct: str, ft: str, kind: str) -> FunctionView:
        record = await self.view.function(ct, ft)
        if record is None:
            raise FunctionNotFound(f"function {ct}/{ft} does not exist")
        revision = await self.view.revision(ct, ft, record.aliases.get(DEFAULT_ALIAS, 1))
        if revision is None:
            raise FunctionNotFound(f"function {ct}/{ft} has no stored revision")
        view = function_view(record, revision, kind)
        view.schedules = await self.list(ct, ft)
        return view


def schedule_view(ct: str, ft: str, stored: StoredSchedule) -> ScheduleView:
    view = ScheduleView(
        name=stored.name,
        payload=msgspec.Raw(stored.payload),
        created=stored.created,
        target=subjects.async_subject(ct, ft),
    )
    interval = interval_of(stored.pattern)
    if interval is not None:
        view.every = interval
    else:
        view.cron = stored.pattern
    view.timezone = stored.timezone if stored.timezone is not None else UNSET
    return view


def _valid_name(name: str) -> bool:
    return bool(SCHEDULE_NAME.fullmatch(name))
