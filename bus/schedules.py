"""Schedules as JetStream message schedules (ADR-51): the stream is their only store.

A schedule is the latest message on ``computebus.schedules.<ct>.<ft>.<name>``: its body is the
payload, its headers the pattern (``Nats-Schedule``), time zone and target. nats-server does the
ticking, once per tick however many APIs and workers run (the stream's leader fires it): at each
tick it stores a copy of the body on the target, ``computebus.ticks.<ct>.<ft>.<name>``, stamped
with ``Nats-Scheduler`` (the schedule's subject) and ``Nats-Schedule-Next`` (when the next tick
is due). The server refuses a target outside the schedule's own stream, so the Async stream
sources the tick subjects, rewritten to the function's ``.async`` subject (bus/async_queue.py):
a tick is then an Async invocation like any other.

Keeping schedules nowhere else means nothing to reconcile: a create is one publish that expects
the subject empty (a taken name is refused by the server, atomically), a delete is one purge.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RawStreamMsg, RetentionPolicy, StorageType, StreamConfig

from bus import subjects
from bus.caller_seal import CallerSeal
from bus.streams import ensure_stream
from schemas.headers import (
    H_EXPECTED_LAST_SUBJECT_SEQ,
    H_SCHEDULE,
    H_SCHEDULE_NEXT,
    H_SCHEDULE_TARGET,
    H_SCHEDULE_TIME_ZONE,
    H_SCHEDULER,
)

# Ticks kept per schedule once the Async stream has copied them: slack for a source that lags.
# On a cluster the Async stream's source stalls for ~15 s when this stream's leader dies (the
# new leader ticks on, the source resumes later and copies the backlog at once): a backlog of
# 8 one-second ticks was measured (tests/cluster), too near the 10 kept before.
TICKS_KEPT = 60
_EVERY = "@every "


@dataclass(frozen=True)
class StoredSchedule:
    """A schedule as the stream holds it."""

    name: str
    pattern: str  # ``@every 5s`` or a cron pattern
    timezone: str | None
    payload: bytes
    created: int  # unix seconds


class ScheduleStream:
    """The schedules stream: store, read and delete a function's schedules."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js

    @classmethod
    async def open(cls, js: JetStreamContext, *, replicas: int = 1) -> ScheduleStream:
        await ensure_stream(
            js,
            StreamConfig(
                name=subjects.SCHEDULES_STREAM,
                subjects=[f"{subjects.SCHEDULE_PREFIX}.>", f"{subjects.TICK_PREFIX}.>"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                discard=DiscardPolicy.OLD,  # the server's schedules refuse discard new
                max_msgs_per_subject=TICKS_KEPT,  # a schedule's subject rolls up to one anyway
                allow_rollup_hdrs=True,
                allow_msg_schedules=True,
                num_replicas=replicas,
            ),
        )
        return cls(js)

    async def create(self, ct: str, ft: str, schedule: StoredSchedule) -> bool:
        """Store a new schedule; False if the function already has one of that name."""
        headers = {
            H_SCHEDULE: schedule.pattern,
            H_SCHEDULE_TARGET: subjects.tick_subject(ct, ft, schedule.name),
            H_EXPECTED_LAST_SUBJECT_SEQ: "0",
        }
        if schedule.timezone is not None:
            headers[H_SCHEDULE_TIME_ZONE] = schedule.timezone
        subject = subjects.schedule_subject(ct, ft, schedule.name)
        try:
            await self.js.publish(subject, schedule.payload, headers=headers)
        except nats.js.errors.APIError as exc:
            if exc.err_code == _WRONG_LAST_SEQUENCE:
                return False
            raise
        return True

    async def get(self, ct: str, ft: str, name: str) -> StoredSchedule | None:
        subject = subjects.schedule_subject(ct, ft, name)
        try:
            msg = await self.js.get_last_msg(subjects.SCHEDULES_STREAM, subject)
        except (nats.js.errors.NotFoundError, nats.errors.NoRespondersError):
            return None
        return _stored(name, msg)

    async def list(self, ct: str, ft: str) -> list[StoredSchedule]:
        """The function's schedules, by name."""
        info = await self.js.stream_info(
            subjects.SCHEDULES_STREAM, subjects_filter=subjects.schedule_filter(ct, ft)
        )
        found = []
        for subject in sorted(info.state.subjects or {}):
            where = subjects.parse_schedule_subject(subject)
            if where is not None and (schedule := await self.get(*where)) is not None:
                found.append(schedule)
        return found

    async def delete(self, ct: str, ft: str, name: str) -> None:
        """Stop it (and drop the ticks the Async stream has copied already)."""
        stream = subjects.SCHEDULES_STREAM
        await self.js.purge_stream(stream, subject=subjects.schedule_subject(ct, ft, name))
        await self.js.purge_stream(stream, subject=subjects.tick_subject(ct, ft, name))

    async def delete_all(self, ct: str, ft: str) -> None:
        """Every schedule of a function (it is being deleted)."""
        stream = subjects.SCHEDULES_STREAM
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await self.js.purge_stream(stream, subject=subjects.schedule_filter(ct, ft))
            await self.js.purge_stream(stream, subject=subjects.tick_filter(ct, ft))


_WRONG_LAST_SEQUENCE = 10071  # JSStreamWrongLastSequenceErr


def _stored(name: str, msg: RawStreamMsg) -> StoredSchedule | None:
    headers = msg.headers or {}
    pattern = headers.get(H_SCHEDULE)
    if not pattern:
        return None
    created = int(msg.time.timestamp()) if isinstance(msg.time, datetime) else 0
    return StoredSchedule(
        name=name,
        pattern=pattern,
        timezone=headers.get(H_SCHEDULE_TIME_ZONE),
        payload=msg.data or b"null",
        created=created,
    )


def interval_of(pattern: str) -> str | None:
    """``5s`` of ``@every 5s``; None for a cron pattern."""
    return pattern.removeprefix(_EVERY) if pattern.startswith(_EVERY) else None


def every_pattern(interval: str) -> str:
    return f"{_EVERY}{interval}"


def tick_of(ct: str, ft: str, headers: dict[str, str]) -> tuple[str, str] | None:
    """The schedule's name and the tick's key (its ``Nats-Schedule-Next``: the server stamps it,
    and it differs from tick to tick) if the message is a tick of this function's schedule."""
    where = subjects.parse_schedule_subject(headers.get(H_SCHEDULER, ""))
    key = headers.get(H_SCHEDULE_NEXT)
    if where is None or not key or where[:2] != (ct, ft):
        return None
    return where[2], key


def tick_invocation_id(seal: CallerSeal, ct: str, ft: str, name: str, key: str) -> str:
    """A tick's invocation id: the same for every delivery of the tick, another for each tick,
    keyed with the roles' secret so that no NATS client can take the id before the tick."""
    return seal.keyed_id("schedule", ct, ft, name, key)
