"""The ADR-32 answers' pure rules: an instance id is one subject token, a list is cut to fit one
message, times are RFC 3339 in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from schemas.codec import encode
from schemas.micro import EndpointInfo, PingResponse, average_ns, fit, instance_id, rfc3339


def test_an_instance_id_is_one_token_that_adr32_names_allow() -> None:
    assert instance_id("box-123-ab12") == "box-123-ab12"
    assert instance_id("box.example.com-123-ab12") == "box_example_com-123-ab12"
    assert instance_id("a b*>c") == "a_b__c"
    assert instance_id("") == "_"


def test_fit_keeps_the_longest_head_that_fits() -> None:
    items = [
        EndpointInfo(name=f"e{i}", subject="s", queue_group="q", metadata={}) for i in range(5)
    ]
    whole = len(encode(items))
    assert fit(items, whole) == items
    assert fit(items, whole - 1) == items[:4]
    assert len(encode(fit(items, 100))) <= 100
    assert fit(items, 1) == []


def test_times_and_averages() -> None:
    moment = datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert rfc3339(moment) == "2024-05-01T12:00:00.123456Z"
    assert datetime.strptime(
        rfc3339(datetime.now(UTC)), "%Y-%m-%dT%H:%M:%S.%fZ"
    )  # nats-py reads it
    assert average_ns(10, 3) == 3
    assert average_ns(0, 0) == 0


def test_the_type_field_comes_with_the_answer() -> None:
    ping = encode(PingResponse(name="computebus", id="x", version="1.0.0", metadata={}))
    assert ping.startswith(b'{"type":"io.nats.micro.v1.ping_response"')
