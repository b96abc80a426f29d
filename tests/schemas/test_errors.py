"""The error hierarchy is the one table of codes, statuses and retry policy."""

from __future__ import annotations

import pytest

from schemas.errors import (
    ERRORS_BY_CODE,
    RETRYABLE_CODES,
    ComputeError,
    FunctionFailed,
    InternalError,
    InvalidInput,
    Overloaded,
    RateLimited,
    Unavailable,
    WorkerLost,
    error_from_code,
)


def test_every_code_maps_to_its_own_class() -> None:
    assert ERRORS_BY_CODE["invalid_input"] is InvalidInput
    assert ERRORS_BY_CODE["internal_error"] is InternalError  # not the base class
    for code, cls in ERRORS_BY_CODE.items():
        assert cls.code == code and 400 <= cls.status <= 599


def test_the_retry_policy_is_read_off_the_classes() -> None:
    assert {
        "function_error",
        "timeout",
        "out_of_memory",
        "worker_lost",
        "overloaded",
        "internal_error",
        "unavailable",
    } == RETRYABLE_CODES
    assert FunctionFailed.retryable and not InvalidInput.retryable


@pytest.mark.parametrize("code", sorted(ERRORS_BY_CODE))
def test_an_error_survives_the_bus_as_code_and_message(code: str) -> None:
    error = error_from_code(code, "m", [{"path": "/x", "message": "y"}])
    assert type(error) is ERRORS_BY_CODE[code]
    assert error.to_body() == {
        "error": "m",
        "code": code,
        "details": [{"path": "/x", "message": "y"}],
    }


def test_an_unknown_code_is_an_internal_error() -> None:
    error = error_from_code("from_the_future", "m")
    assert isinstance(error, InternalError) and isinstance(error, ComputeError)
    assert Overloaded.retry_after_s >= 1


def test_the_retry_later_answers_say_when() -> None:
    """429 and 503 ``unavailable`` carry Retry-After (the OpenAPI document says so); a
    ``worker_lost`` 503 does not, since the call may have run."""
    for error in (Overloaded("x"), RateLimited("x", retry_after_s=3), Unavailable("x")):
        assert int(error.http_headers()["Retry-After"]) >= 1
    assert "Retry-After" not in WorkerLost("x").http_headers()
