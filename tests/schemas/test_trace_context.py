"""W3C traceparent / tracestate parsing, against the spec's own rules and examples."""

from __future__ import annotations

import pytest

from schemas.headers import call_from_headers
from schemas.trace_context import (
    TraceContext,
    checked_tracestate,
    format_traceparent,
    new_span_id,
    new_trace_id,
    parse_traceparent,
    trace_id_for,
    trace_of,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
VALID = f"00-{TRACE_ID}-{PARENT_ID}-01"


def test_the_spec_example_is_read() -> None:
    assert parse_traceparent(VALID) == TraceContext(TRACE_ID, PARENT_ID, True, "")
    unsampled = parse_traceparent(f"00-{TRACE_ID}-{PARENT_ID}-00")
    assert unsampled is not None and not unsampled.sampled
    assert parse_traceparent(f" {VALID}\t") is not None  # optional whitespace around the value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        VALID[:-1],  # too short
        VALID + "-",  # version 00 is exactly 55 characters
        VALID + "0",
        f"00-{TRACE_ID.upper()}-{PARENT_ID}-01",  # hex must be lowercase
        f"00-{'0' * 32}-{PARENT_ID}-01",  # all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero parent id
        f"ff-{TRACE_ID}-{PARENT_ID}-01",  # version ff is invalid
        f"0g-{TRACE_ID}-{PARENT_ID}-01",
        f"00-{TRACE_ID}-{PARENT_ID}-0x",
        f"00_{TRACE_ID}_{PARENT_ID}_01",
        f"00-{TRACE_ID[:-1]}z-{PARENT_ID}-01",
        f"cc-{TRACE_ID}-{PARENT_ID}-01x",  # a later version's extra fields follow a dash
    ],
)
def test_a_malformed_traceparent_is_ignored(value: str) -> None:
    assert parse_traceparent(value, "congo=t61rcWkgMzE") is None


def test_a_later_version_is_read_for_its_known_fields() -> None:
    found = parse_traceparent(f"cc-{TRACE_ID}-{PARENT_ID}-01-what-comes-next")
    assert found == TraceContext(TRACE_ID, PARENT_ID, True, "")
    assert parse_traceparent(f"cc-{TRACE_ID}-{PARENT_ID}-01") is not None


def test_tracestate_is_kept_when_valid_and_dropped_alone_when_not() -> None:
    found = parse_traceparent(VALID, "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE")
    assert found is not None and found.tracestate == "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    assert checked_tracestate("tenant@vendor=x,,  a-b*c/d=1") == "tenant@vendor=x,a-b*c/d=1"
    for bad in ("UPPER=1", "a=1,a=2", "a", "a=", "a=b=c", "a=x" + "y" * 600):
        assert checked_tracestate(bad) == "", bad
    assert checked_tracestate(",".join(f"k{i}=v" for i in range(33))) == ""  # over 32 members
    dropped = parse_traceparent(VALID, "a=1,a=2")
    assert dropped is not None and dropped.tracestate == ""


def test_written_traceparents_read_back() -> None:
    trace_id, span_id = new_trace_id(), new_span_id()
    assert len(trace_id) == 32 and len(span_id) == 16
    written = format_traceparent(trace_id, span_id, sampled=True)
    assert parse_traceparent(written) == TraceContext(trace_id, span_id, True, "")
    child = TraceContext(trace_id, None, False, "a=1").child(span_id)
    assert child.headers() == {
        "traceparent": f"00-{trace_id}-{span_id}-00",
        "tracestate": "a=1",
    }


def test_a_call_continues_the_callers_trace_or_starts_one() -> None:
    given = call_from_headers("c", "123456789", b"1", {"traceparent": VALID}, "inv1")
    assert given.trace == TraceContext(TRACE_ID, PARENT_ID, True, "")
    fresh = call_from_headers("c", "123456789", b"1", {"traceparent": "nope"}, "inv1")
    assert fresh.trace is not None and fresh.trace.parent_id is None
    assert fresh.trace.trace_id != TRACE_ID and len(fresh.trace.trace_id) == 32
    # Async without a traceparent: every attempt of one invocation lands in one trace.
    first = call_from_headers("c", "123456789", b"1", {}, "inv1", "Async")
    again = call_from_headers("c", "123456789", b"1", {}, "inv1", "Async")
    assert first.trace == again.trace == TraceContext(trace_id_for("inv1"))
    assert trace_of({"Traceparent": VALID}, "x", stable=True).trace_id == TRACE_ID
