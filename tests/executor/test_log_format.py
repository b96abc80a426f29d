"""The log formats: a JSON object per record with its extra fields as keys, and the checks of
COMPUTEBUS_LOG_LEVEL and COMPUTEBUS_LOG_FORMAT."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from executor.log_format import JsonFormatter, formatter, log_format, log_level
from executor.settings import SettingsError, unknown_settings


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("computebus.invocation", logging.WARNING, "x.py", 1, msg, args, None)
    record.created = 1_767_225_600.25  # 2026-01-01T00:00:00.250Z
    record.__dict__.update(extra)
    return record


def test_a_record_is_one_json_object_with_its_extra_fields_as_keys() -> None:
    line = JsonFormatter().format(
        _record("ran %s\nin %d ms", "demo/hello", 3, invocation_id="abc", duration_ms=1.5)
    )
    assert "\n" not in line
    assert json.loads(line) == {
        "ts": "2026-01-01T00:00:00.250Z",
        "level": "WARNING",
        "logger": "computebus.invocation",
        "message": "ran demo/hello\nin 3 ms",
        "invocation_id": "abc",
        "duration_ms": 1.5,
    }


def test_exceptions_and_values_json_cannot_hold_are_kept_as_text() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = _record("failed", path=object.__new__(object))
        record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record))
    assert "RuntimeError: boom" in entry["exception"]
    assert entry["path"].startswith("<object object")


def test_uvicorns_access_line_gets_its_parts_as_fields() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "h.py",
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "POST", "/compute/functions/a/1/invoke", "1.1", 200),
        None,
    )
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == '127.0.0.1:5000 - "POST /compute/functions/a/1/invoke HTTP/1.1" 200'
    assert (entry["method"], entry["path"], entry["http_status"]) == (
        "POST",
        "/compute/functions/a/1/invoke",
        200,
    )


def test_text_stays_the_default_and_shows_no_extra_fields() -> None:
    assert log_format({}) == "text" and log_format({"COMPUTEBUS_LOG_FORMAT": "JSON"}) == "json"
    line = formatter("text").format(_record("ran %s", "demo/hello", invocation_id="abc"))
    assert line.endswith(" WARNING computebus.invocation: ran demo/hello")


def test_bad_values_are_refused_naming_their_variable() -> None:
    assert log_level({}) == logging.INFO and log_level({"COMPUTEBUS_LOG_LEVEL": "debug"}) == 10
    with pytest.raises(SettingsError, match=r"^COMPUTEBUS_LOG_FORMAT='xml': must be one of"):
        log_format({"COMPUTEBUS_LOG_FORMAT": "xml"})
    with pytest.raises(SettingsError, match=r"^COMPUTEBUS_LOG_LEVEL='loud': must be one of"):
        log_level({"COMPUTEBUS_LOG_LEVEL": "loud"})
    # Read before the settings, so not warned about as unknown ones.
    env = {"COMPUTEBUS_LOG_FORMAT": "json", "COMPUTEBUS_LOG_LEVEL": "INFO"}
    assert unknown_settings(env) == []
