"""What nats-server accepts as a message schedule (ADR-51), checked before anything is stored, so
a bad schedule is a 400 that names the part that is wrong rather than the server's bare "pattern
invalid".

The grammar is the server's own (server/cron.go, from robfig/cron): six fields, ``second minute
hour day-of-month month day-of-week``; each a comma-separated list of ``*`` or ``?``, ``N`` or
``N-M``, optionally ``/step`` (``N/step`` runs from N to the field's maximum); months and weekdays
also by their three-letter English names; the shorthands ``@yearly`` ``@annually`` ``@monthly``
``@weekly`` ``@daily`` ``@midnight`` ``@hourly``. A pattern that can never fire (``0 0 0 30 2 *``)
is refused too, as the server refuses it. ``@every <duration>`` takes Go's duration syntax and at
least one second.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass

from schemas.errors import InvalidRequest, detail

SHORTHANDS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
MIN_EVERY_S = 1.0


@dataclass(frozen=True)
class _Field:
    name: str
    lo: int
    hi: int
    names: tuple[str, ...] = ()  # names[i] stands for lo + i


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
FIELDS = (
    _Field("second", 0, 59),
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTHS),
    _Field("day of week", 0, 6, _DAYS),
)
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # a leap year comes within 5


class _Bad(Exception):
    pass


def check_cron(pattern: str, where: str = "/cron") -> str:
    """``pattern`` as the server will read it; a 400 naming the field and part that is wrong."""
    expanded = SHORTHANDS.get(pattern.strip(), pattern)
    parts = expanded.split()
    if len(parts) != len(FIELDS):
        raise _invalid(
            where,
            f"needs 6 fields (second minute hour day-of-month month day-of-week), got {len(parts)}",
        )
    masks: list[tuple[int, bool]] = []
    for position, (field, text) in enumerate(zip(FIELDS, parts, strict=True), start=1):
        try:
            masks.append(_field_mask(field, text))
        except _Bad as exc:
            raise _invalid(where, f"field {position} ({field.name}) {text!r}: {exc}") from None
    if not _can_fire(masks):
        raise _invalid(where, "never fires: no day of month in the given months matches")
    return pattern.strip()


def _field_mask(field: _Field, text: str) -> tuple[int, bool]:
    """The values ``text`` selects as a bit mask, and whether it was a plain ``*`` (which makes
    the day fields combine with AND, as in the server)."""
    bits, star = 0, False
    for item in text.split(","):
        if not item:
            continue  # the server skips empty items
        range_part, slash, step_text = item.partition("/")
        if "/" in step_text:
            raise _Bad(f"too many slashes in {item!r}")
        low_high = range_part.split("-")
        if low_high[0] in ("*", "?"):
            if len(low_high) != 1:
                raise _Bad(f"too many hyphens in {item!r}")
            start, end, is_star = field.lo, field.hi, True
        else:
            if len(low_high) > 2:
                raise _Bad(f"too many hyphens in {item!r}")
            start = _number(field, low_high[0])
            end = _number(field, low_high[1]) if len(low_high) == 2 else start
            is_star = False
        step = 1
        if slash:
            step = _number(None, step_text)
            if len(low_high) == 1:
                end = field.hi
            if step > 1:
                is_star = False
        if start < field.lo:
            raise _Bad(f"{start} is below the minimum {field.lo}")
        if end > field.hi:
            raise _Bad(f"{end} is above the maximum {field.hi}")
        if start > end:
            raise _Bad(f"the range starts at {start}, after its end {end}")
        if step == 0:
            raise _Bad("a step must be a positive number")
        for value in range(start, end + 1, step):
            bits |= 1 << value
        star = star or is_star
    if not bits:
        raise _Bad("selects nothing")
    return bits, star


def _number(field: _Field | None, text: str) -> int:
    if field is not None and text.lower() in field.names:
        return field.lo + field.names.index(text.lower())
    if not re.fullmatch(r"\+?[0-9]+", text):
        named = f" or a name ({', '.join(field.names)})" if field and field.names else ""
        raise _Bad(f"{text!r} is not a number{named}")
    return int(text)


def _can_fire(masks: list[tuple[int, bool]]) -> bool:
    (dom, dom_star), (month, _), (dow, dow_star) = masks[3], masks[4], masks[5]
    if not (dom_star or dow_star):
        return True  # either day field may match: every month has every weekday
    if not dom_star:  # weekday "*": the day of month alone decides
        return any(
            month >> m & 1 and any(dom >> d & 1 for d in range(1, _DAYS_IN_MONTH[m - 1] + 1))
            for m in range(1, 13)
        )
    return bool(dow)


def check_every(text: str, where: str = "/every") -> float:
    """Go's duration syntax (``1s``, ``90s``, ``1m30s``, ``1.5h``), at least one second;
    returns seconds."""
    seconds = go_duration_s(text)
    if seconds is None:
        raise _invalid(where, f"{text!r} is not a duration such as 30s, 5m or 1h30m")
    if seconds < MIN_EVERY_S:
        raise _invalid(where, f"{text!r} is under the minimum of 1s")
    return seconds


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}
_UNITS["h"] = 3600.0
_PART = re.compile(r"([0-9]*\.?[0-9]*)(ns|us|µs|μs|ms|s|m|h)")


def go_duration_s(text: str) -> float | None:
    """Seconds in a Go duration (no sign allowed here: a schedule's interval is positive)."""
    if text in ("", "0"):
        return 0.0 if text == "0" else None
    total, at = 0.0, 0
    while at < len(text):
        found = _PART.match(text, at)
        if found is None or found.group(1) in ("", "."):
            return None
        total += float(found.group(1)) * _UNITS[found.group(2)]
        at = found.end()
    return total


def check_timezone(name: str, where: str = "/timezone") -> str:
    """An IANA time zone this machine knows (the server's Go runtime reads the same names)."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise _invalid(where, f"{name!r} is not a known IANA time zone") from None
    return name


def _invalid(where: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{where.lstrip('/')}: {message}", [detail(where, message)])
