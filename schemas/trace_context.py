"""W3C Trace Context (https://www.w3.org/TR/trace-context/): the ``traceparent`` and
``tracestate`` headers read and written, and fresh ids. Pure: a few string operations per
invocation, no OpenTelemetry (``executor/tracing.py`` exports spans when asked to).

A ``traceparent`` that breaks the spec is ignored, as the spec says (the receiver starts a new
trace); so is its ``tracestate``. A ``tracestate`` that breaks the spec is dropped on its own.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# NATS header names keep their case; these are the spellings looked for.
_TRACEPARENT_NAMES = (TRACEPARENT, "Traceparent")
_TRACESTATE_NAMES = (TRACESTATE, "Tracestate")

_HEX = frozenset("0123456789abcdef")  # lowercase only, as the spec's HEXDIGLC
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_V00_LENGTH = 55  # "00-" 32 "-" 16 "-" 2
_SAMPLED = 0x01

_TRACESTATE_MAX_CHARS = 512
_TRACESTATE_MAX_MEMBERS = 32
_KEY = r"(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})"
_VALUE = r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
_MEMBER = re.compile(rf"({_KEY})=({_VALUE})")


@dataclass(frozen=True, slots=True)
class TraceContext:
    """Where an invocation sits in a trace: its ``trace_id``, the span it continues
    (``parent_id``; None when this invocation starts the trace), whether the trace is
    ``sampled``, and the vendors' ``tracestate`` ("" for none)."""

    trace_id: str
    parent_id: str | None = None
    sampled: bool = True
    tracestate: str = ""

    def child(self, span_id: str) -> TraceContext:
        """The context a span ``span_id`` of this trace hands to what it calls."""
        return TraceContext(self.trace_id, span_id, self.sampled, self.tracestate)

    @property
    def traceparent(self) -> str:
        """This context's ``traceparent`` (it names ``parent_id``, so it must have one)."""
        assert self.parent_id is not None
        return format_traceparent(self.trace_id, self.parent_id, self.sampled)

    def headers(self) -> dict[str, str]:
        """``traceparent`` and, when there is one, ``tracestate``."""
        out = {TRACEPARENT: self.traceparent}
        if self.tracestate:
            out[TRACESTATE] = self.tracestate
        return out


def new_trace_id() -> str:
    while (trace_id := os.urandom(16).hex()) == _ZERO_TRACE:
        pass
    return trace_id


def new_span_id() -> str:
    while (span_id := os.urandom(8).hex()) == _ZERO_SPAN:
        pass
    return span_id


def trace_id_for(invocation_id: str) -> str:
    """A trace id that follows from an invocation id: the same one for every attempt of an
    Async invocation whose publisher sent no ``traceparent``."""
    digest = hashlib.sha256(b"computebus trace " + invocation_id.encode()).hexdigest()[:32]
    return digest if digest != _ZERO_TRACE else new_trace_id()


def format_traceparent(trace_id: str, span_id: str, sampled: bool) -> str:
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"


def _is_hex(text: str) -> bool:
    return _HEX.issuperset(text)


def parse_traceparent(value: str | None, tracestate: str | None = None) -> TraceContext | None:
    """The context a valid ``traceparent`` names (with ``tracestate`` kept if it is valid
    too), or None for a missing or malformed one."""
    if not value:
        return None
    value = value.strip(" \t")
    if len(value) < _V00_LENGTH or value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    version = value[:2]
    if not _is_hex(version) or version == "ff":
        return None
    if len(value) > _V00_LENGTH and (version == "00" or value[_V00_LENGTH] != "-"):
        return None  # version 00 is exactly 55 characters; a later one may add "-..." fields
    trace_id, parent_id, flags = value[3:35], value[36:52], value[53:55]
    if not (_is_hex(trace_id) and _is_hex(parent_id) and _is_hex(flags)):
        return None
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    sampled = bool(int(flags, 16) & _SAMPLED)
    return TraceContext(trace_id, parent_id, sampled, checked_tracestate(tracestate))


def checked_tracestate(value: str | None) -> str:
    """``value`` if it is a valid ``tracestate`` of at most 512 characters, else ""."""
    if not value or len(value) > _TRACESTATE_MAX_CHARS:
        return ""
    members = [part.strip(" \t") for part in value.split(",")]
    members = [part for part in members if part]
    if len(members) > _TRACESTATE_MAX_MEMBERS:
        return ""
    keys: set[str] = set()
    for member in members:
        matched = _MEMBER.fullmatch(member)
        if matched is None or matched.group(1) in keys:
            return ""
        keys.add(matched.group(1))
    return ",".join(members)


def from_headers(headers: Mapping[str, str]) -> TraceContext | None:
    """The context of a NATS message's ``traceparent`` / ``tracestate`` headers, if valid."""
    parent = _first(headers, _TRACEPARENT_NAMES)
    if parent is None:
        return None
    return parse_traceparent(parent, _first(headers, _TRACESTATE_NAMES))


def trace_of(headers: Mapping[str, str], invocation_id: str, *, stable: bool) -> TraceContext:
    """The trace a message's headers continue, else a new one: random, or when ``stable`` one
    that follows from ``invocation_id`` (every attempt of an Async invocation in one trace)."""
    found = from_headers(headers)
    if found is not None:
        return found
    return TraceContext(trace_id_for(invocation_id) if stable else new_trace_id())


def _first(headers: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        found = headers.get(name)
        if found is not None:
            return found
    return None
