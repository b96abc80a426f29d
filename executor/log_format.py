"""How computebus's own log lines look, set once at start-up by the CLI: readable text (the
default) or, with ``COMPUTEBUS_LOG_FORMAT=json``, one JSON object per line whose structured
fields (passed with ``extra=``) are keys of their own.

The level and the format are read before the settings (the settings' own warnings are logged),
so they are checked here, and a bad value is refused naming its variable, as settings are.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

import msgspec

from executor.settings import SettingsError

LEVEL_VAR = "COMPUTEBUS_LOG_LEVEL"
FORMAT_VAR = "COMPUTEBUS_LOG_FORMAT"
FORMATS = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# What every LogRecord carries: the rest of a record's attributes came with ``extra=``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
# A value JSON cannot hold is logged as its str(); msgspec escapes newlines, as JSON must.
_ENCODER = msgspec.json.Encoder(enc_hook=str)
# uvicorn's access line: (client address, method, path with query, HTTP version, status).
_ACCESS_FIELDS = ("client", "method", "path", "http_version", "http_status")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (UTC, ISO 8601 with milliseconds), ``level``,
    ``logger``, ``message``, then every ``extra=`` field, and ``exception`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            entry.update(zip(_ACCESS_FIELDS, args, strict=True))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return _ENCODER.encode(entry).decode()


def _iso_utc(created: float) -> str:
    millis = int(created * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{millis:03d}Z"


def log_level(env: Mapping[str, str]) -> int:
    """``COMPUTEBUS_LOG_LEVEL`` (a level's name, any case; INFO when unset)."""
    raw = env.get(LEVEL_VAR) or "INFO"
    if raw.upper() not in LEVELS:
        raise SettingsError(f"{LEVEL_VAR}={raw!r}: must be one of {', '.join(LEVELS)}")
    level: int = logging.getLevelNamesMapping()[raw.upper()]
    return level


def log_format(env: Mapping[str, str]) -> str:
    """``COMPUTEBUS_LOG_FORMAT`` (``text`` when unset)."""
    raw = env.get(FORMAT_VAR) or "text"
    if raw.lower() not in FORMATS:
        raise SettingsError(f"{FORMAT_VAR}={raw!r}: must be one of {', '.join(FORMATS)}")
    return raw.lower()


def formatter(kind: str) -> logging.Formatter:
    return JsonFormatter() if kind == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(env: Mapping[str, str]) -> None:
    """The root logger on stderr at the level and in the format ``env`` asks for; raises
    ``SettingsError`` for a bad value (before anything is logged)."""
    level, kind = log_level(env), log_format(env)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(kind))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # Neither format shows the caller's file and line, thread or process: not looking them up
    # makes a line about a third cheaper (the logging HOWTO's "Optimization"); the worker logs
    # one per invocation.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per client request
    # uvicorn logs through the root logger (the API passes it no config of its own): its
    # start-up chatter only from WARNING; its access lines, when the API turns them on, at INFO.
    logging.getLogger("uvicorn.error").setLevel(max(level, logging.WARNING))
    logging.getLogger("uvicorn.access").setLevel(logging.INFO)
