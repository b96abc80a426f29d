"""Reading a sourced message's origin off ``Nats-Stream-Source``, and the transforms' filters."""

from __future__ import annotations

from bus import subjects
from bus.subject_triggers import Origin, origin_of, transform_filters, trigger_headers

STREAM = subjects.trigger_stream("trg_0123456789abcdef", "canary")


def test_the_origin_is_the_trigger_its_alias_the_sequence_and_the_subject_published_on() -> None:
    header = f"{STREAM} 42 a.*\fcomputebus.app.a.* x\fx computebus.app.a.b"
    assert origin_of({"Nats-Stream-Source": header}) == Origin(
        "trg_0123456789abcdef", "canary", 42, "a.b"
    )


def test_a_copy_from_another_stream_or_none_is_no_trigger_message() -> None:
    assert origin_of({}) is None
    assert origin_of({"Nats-Stream-Source": "COMPUTEBUS_SCHEDULES 3 f d s"}) is None
    assert origin_of({"Nats-Stream-Source": f"{STREAM} x f d s"}) is None


def test_a_publishers_compute_headers_are_dropped_and_the_trigger_alias_set() -> None:
    given = {"Compute-Alias": "x", "compute-revision": "2", "X-Shop": "n"}
    assert trigger_headers(given, "production") == {"X-Shop": "n", "Compute-Alias": "production"}


def test_a_trailing_wildcard_is_spelt_as_each_length_up_to_six_tokens() -> None:
    assert transform_filters("a.*") == ["a.*", "computebus.app.a.*"]
    bare = ["a.b.c.d.*", "a.b.c.d.*.*"]
    assert transform_filters("a.b.c.d.>") == [*bare, *(f"computebus.app.{s}" for s in bare)]
