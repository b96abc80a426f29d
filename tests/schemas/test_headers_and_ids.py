"""The call headers and the id rules, without a bus: what a call reads from its headers, what
it refuses (naming the header), and which ids can name a function or an invocation."""

from __future__ import annotations

import pytest

from schemas import ids
from schemas.errors import InvalidRequest, Overloaded
from schemas.headers import (
    H_ALIAS,
    H_DEADLINE,
    H_ERROR,
    H_ERROR_CODE,
    H_INVOCATION_ID,
    H_RETRY_AFTER,
    H_REVISION,
    H_TIMEOUT,
    call_from_headers,
    deadline_ms,
    error_headers,
    new_invocation_id,
)


def test_a_call_takes_its_options_from_the_headers() -> None:
    headers = {H_ALIAS: "canary", H_REVISION: "3", H_TIMEOUT: "1500"}
    call = call_from_headers("team-a", "000000001", b"", headers, "inv-1", "Async")
    assert (call.alias, call.revision, call.timeout_ms) == ("canary", 3, 1500)
    assert call.payload == b"null"  # an empty body is JSON null
    assert call.invocation_type == "Async"


def test_an_empty_alias_header_means_the_default() -> None:
    call = call_from_headers("c", "000000001", b"1", {H_ALIAS: ""}, "i")
    assert call.alias is None and call.revision is None and call.timeout_ms is None


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "ten", " 7x"])
def test_a_number_header_that_is_not_a_positive_integer_is_named(value: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        call_from_headers("c", "000000001", b"1", {H_TIMEOUT: value}, "i")
    assert info.value.details == [{"path": H_TIMEOUT, "message": "must be a positive integer"}]
    assert repr(value) in info.value.message


def test_a_bad_invocation_id_is_refused_by_name() -> None:
    with pytest.raises(InvalidRequest) as info:
        call_from_headers("c", "000000001", b"1", {}, "has space")
    assert info.value.details[0]["path"] == H_INVOCATION_ID


def test_a_deadline_in_seconds_is_refused_and_milliseconds_are_taken() -> None:
    assert deadline_ms({}) is None
    assert deadline_ms({H_DEADLINE: "1790000000000"}) == 1790000000000
    with pytest.raises(InvalidRequest, match="looks like seconds"):
        deadline_ms({H_DEADLINE: "1790000000"})


def test_error_headers_carry_status_message_and_retry_after() -> None:
    headers = error_headers(Overloaded("busy " * 200), "inv-9")
    assert headers[H_INVOCATION_ID] == "inv-9"
    assert headers[H_ERROR_CODE] == "429"
    assert len(headers[H_ERROR]) == 512  # a long message is cut to fit a header
    assert int(headers[H_RETRY_AFTER]) >= 1


def test_new_invocation_ids_are_valid_and_distinct() -> None:
    made = {new_invocation_id() for _ in range(100)}
    assert len(made) == 100 and all(ids.is_invocation_id(i) for i in made)


@pytest.mark.parametrize(
    ("ct", "ft", "ok"),
    [
        ("team-a_1", "000000001", True),
        ("x" * 64, "123456789", True),
        ("x" * 65, "123456789", False),
        ("", "123456789", False),
        ("team.a", "123456789", False),  # a dot would add a subject token
        ("team*", "123456789", False),
        ("team", "12345678", False),
        ("team", "12345678a", False),
    ],
)
def test_which_refs_can_name_a_function(ct: str, ft: str, ok: bool) -> None:
    assert ids.is_function_ref(ct, ft) is ok


def test_invocation_ids_follow_the_collection_alphabet() -> None:
    assert ids.is_invocation_id("async-42")
    assert not ids.is_invocation_id("a>b")
    assert not ids.is_invocation_id("x" * 65)
    assert ids.DEFAULT_ALIAS == "production"


def test_live_is_never_an_invocation_id() -> None:
    """``.../invocations/live`` is the live stream; an invocation named so could not be read
    (an Async message whose Nats-Msg-Id says ``live`` runs as ``async-<seq>``)."""
    assert not ids.is_invocation_id("live")
    assert ids.is_invocation_id("alive")
