"""The schedule grammar nats-server accepts (server/cron.go), checked before anything is stored."""

from __future__ import annotations

import pytest

from schemas.cron import check_cron, check_every, check_timezone, go_duration_s
from schemas.errors import InvalidRequest
from schemas.schedules import ScheduleRequest, checked


@pytest.mark.parametrize(
    "pattern",
    [
        "* * * * * *",
        "0 30 2 * * *",
        "*/5 * * * * ?",
        "0 0 9-17/2 * * mon-fri",
        "0 0 0 1,15 jan,JUL *",
        "0 0 0 29 2 *",  # a leap day comes within five years
        "0 0 0 31 * 1",  # either day field may match when both are given
        "5/10 * * * * *",
        "@hourly",
        "@yearly",
    ],
)
def test_the_server_grammar_is_accepted(pattern: str) -> None:
    assert check_cron(pattern) == pattern


@pytest.mark.parametrize(
    ("pattern", "names"),
    [
        ("* * * * *", "6 fields"),
        ("60 * * * * *", "field 1 (second) '60'"),
        ("* * 24 * * *", "field 3 (hour)"),
        ("* * * 0 * *", "field 4 (day of month) '0': 0 is below the minimum 1"),
        ("* * * * 13 *", "field 5 (month)"),
        ("* * * * * 7", "field 6 (day of week)"),
        ("* * * * * sun-x", "'x' is not a number or a name"),
        ("5-1 * * * * *", "starts at 5, after its end 1"),
        ("*/0 * * * * *", "positive"),
        ("1-2-3 * * * * *", "too many hyphens"),
        ("1/2/3 * * * * *", "too many slashes"),
        (", * * * * *", "selects nothing"),
        ("0 0 0 30 2 *", "never fires"),
        ("@fortnightly", "6 fields"),
    ],
)
def test_a_bad_pattern_names_the_field_and_part(pattern: str, names: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_cron(pattern)
    assert caught.value.details[0]["path"] == "/cron"
    assert names in caught.value.details[0]["message"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("90s", 90.0), ("1m30s", 90.0), ("1.5h", 5400.0), ("1500ms", 1.5)],
)
def test_every_takes_go_durations(text: str, seconds: float) -> None:
    assert go_duration_s(text) == seconds
    assert check_every(text) == seconds


@pytest.mark.parametrize("text", ["500ms", "0", "0.5s", "999999us"])
def test_every_under_a_second_is_refused(text: str) -> None:
    with pytest.raises(InvalidRequest, match="under the minimum of 1s"):
        check_every(text)


@pytest.mark.parametrize("text", ["", "1", "s", "1x", "-1s", "1 s", "soon"])
def test_every_that_is_no_duration_is_refused(text: str) -> None:
    with pytest.raises(InvalidRequest, match="not a duration"):
        check_every(text)


def test_time_zones_are_iana_names() -> None:
    assert check_timezone("Europe/Paris") == "Europe/Paris"
    for bad in ("Mars/Base", "", "../etc/passwd"):
        with pytest.raises(InvalidRequest) as caught:
            check_timezone(bad)
        assert caught.value.details[0]["path"] == "/timezone"


def test_a_request_needs_exactly_one_of_cron_and_every() -> None:
    for request in (
        ScheduleRequest(name="a"),
        ScheduleRequest(name="a", cron="@daily", every="1s"),
    ):
        with pytest.raises(InvalidRequest) as caught:
            checked(request)
        assert {d["path"] for d in caught.value.details} == {"/cron", "/every"}
    with pytest.raises(InvalidRequest, match="cron only"):
        checked(ScheduleRequest(name="a", every="1s", timezone="UTC"))
    with pytest.raises(InvalidRequest, match="name"):
        checked(ScheduleRequest(name="a b", every="1s"))
    assert checked(ScheduleRequest(name="a", cron="@daily", timezone="UTC")).timezone == "UTC"
