"""A function's schedule as a caller sends it and as the API shows it, checked whole before it
is stored (the cron grammar is in cron.py)."""

from __future__ import annotations

import msgspec
from msgspec import UNSET, UnsetType

from schemas import ids
from schemas.base import Struct
from schemas.cron import check_cron, check_every, check_timezone
from schemas.errors import InvalidRequest, detail

SCHEDULE_NAME = ids.COLLECTION_TOPIC  # one subject token: the schedule's own subject ends in it


class ScheduleRequest(Struct):
    """``POST .../schedules``: ``cron`` (six fields, seconds first) or ``every`` (a duration of
    at least 1s), one of them; ``timezone`` only with ``cron``; ``payload`` is any JSON value, as
    an invoke's (a string holds JSON)."""

    name: str
    cron: str | UnsetType = UNSET
    every: str | UnsetType = UNSET
    timezone: str | UnsetType = UNSET
    payload: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))


class ScheduleView(Struct):
    """A schedule as stored and shown; ``target`` is the subject each tick is sent to."""

    name: str
    cron: str | UnsetType = UNSET
    every: str | UnsetType = UNSET
    timezone: str | UnsetType = UNSET
    payload: msgspec.Raw | UnsetType = UNSET
    created: int = 0  # unix seconds
    target: str = ""


def checked(request: ScheduleRequest) -> ScheduleView:
    """The schedule ``request`` names, or a 400 that names the field."""
    if not SCHEDULE_NAME.fullmatch(request.name):
        reason = f"must match {SCHEDULE_NAME.pattern}"
        raise InvalidRequest(f"name {reason}", [detail("/name", reason)])
    has_cron = not isinstance(request.cron, UnsetType)
    has_every = not isinstance(request.every, UnsetType)
    if has_cron == has_every:
        message = "give exactly one of cron and every"
        raise InvalidRequest(message, [detail("/cron", message), detail("/every", message)])
    view = ScheduleView(name=request.name)
    if isinstance(request.cron, str):
        view.cron = check_cron(request.cron)
    if isinstance(request.every, str):
        check_every(request.every)
        view.every = request.every
        if not isinstance(request.timezone, UnsetType):
            message = "a time zone applies to cron only (an interval runs the same anywhere)"
            raise InvalidRequest(message, [detail("/timezone", message)])
    if isinstance(request.timezone, str):
        view.timezone = check_timezone(request.timezone)
    return view
