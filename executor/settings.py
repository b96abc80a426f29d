"""Configuration: one pure ``Settings.from_env(mapping)`` that refuses bad values at start-up."""

from __future__ import annotations

import difflib
import json
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from bus.connect import with_credentials
from bus.stores import StoreLimits
from schemas.errors import SetupError

MIB = 1024 * 1024
_ORIGIN = re.compile(r"^https?://[^/\s:]+(:[0-9]{1,5})?$")
MIN_COLLECTION_BUDGET = 16 * MIB
# Kept beside executor.runtime.sandbox.LEVELS (settings must not import the runtime).
ISOLATION_LEVELS = ("auto", "bwrap+cgroup", "bwrap", "cgroup", "rlimit")


class SettingsError(SetupError, ValueError):
    """A setting that cannot be used, named in the message (raised at start-up)."""

    pass


@dataclass(frozen=True)
class Settings:
    """Every operator setting, with its default; read by ``from_env``, checked by ``checked``."""

    data_dir: Path = Path(".computebus")
    nats_url: str | None = None
    # The credentials file of a bus set up by computebus (`computebus nats-config`, or an
    # embedded server's): each role takes its own user from it, and NATS_URL lists only servers.
    nats_credentials: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 64 * MIB
    max_payload_bytes: int = 6 * MIB
    max_bundle_bytes: int = 50 * MIB
    collection_bundle_max_bytes: int = 2048 * MIB  # the bundles of one collection's revisions
    max_timeout_ms: int = 900_000
    log_cap_bytes: int = 64 * 1024
    pool_per_revision: int = 4
    pool_max_waiters: int = 256
    idle_s: float = 300.0
    worker_concurrency: int = 256  # invocations running at once (holding a handler process)
    function_concurrency: int = 64  # one function's in flight on a worker, unless it sets its own
    # Each collection's budget for its monitor records and for its dead letters (its own
    # oldest go first); at least MIN_COLLECTION_BUDGET, so that one big record always fits.
    monitor_max_bytes: int = 128 * MIB
    dead_letter_max_bytes: int = 64 * MIB
    drain_s: float = 30.0
    bundle_gc_grace_s: float = 600.0
    # Async invocations: how long a Nats-Msg-Id / Idempotency-Key is remembered, how long a
    # worker may hold one without a sign of life before it goes to another, how many one worker
    # runs at once, how big the queue may grow, and how long dead letters are kept.
    async_dedupe_window_s: float = 600.0
    async_ack_wait_s: float = 30.0
    async_concurrency: int = 32
    async_max_bytes: int = 1024 * MIB
    # How many copies JetStream keeps of every bucket, object store and stream (a cluster's
    # servers; 1 on a single server).
    replicas: int = 1
    dead_letter_max_age_s: float = 14 * 24 * 3600.0
    # Whether functions may ask for compute_asset.network (then they share the host's network,
    # loopback services included): off unless the operator turns it on.
    allow_network: bool = False
    # The handler sandbox: the strongest level to use ("auto" takes the strongest this machine
    # offers), the interpreters handlers run (default: the worker's own base Python, node on
    # PATH), and the host uids a root worker gives its handler processes, one each.
    isolation: str = "auto"
    python: str | None = None
    node: str | None = None
    sandbox_uids: tuple[int, int] = (1_500_000_000, 1_500_065_535)
    # Handler processes each worker starts ahead of time per runtime (and limits in use), so a
    # new revision's first process is already running; 0 turns them off.
    spares: int = 1
    # Access: whether /metrics, /openapi.json and /docs answer without a token (unset: only
    # when the API listens on loopback), and the browser origins allowed to call the API (CORS;
    # comma-separated, "*" for any).
    ops_public: bool | None = None
    cors_origins: tuple[str, ...] = ()
    # Metrics: where a worker serves its own /metrics (no port: none; 0 picks a free one, which
    # its ready line and ping answer give), and how many functions get series of their own in
    # each process (the rest are counted together under "_other").
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int | None = None
    metrics_max_functions: int = 500
    # Live invocation streams (server-sent events) one API process keeps open at once.
    live_streams_max: int = 64
    # uvicorn's access log (a line per HTTP request, invokes included) through computebus's
    # own log format; off by default.
    access_log: bool = False
    # Traces: the OTLP/HTTP URL spans are sent to ("": none sent, and OpenTelemetry is never
    # imported). Unset, it follows OpenTelemetry's own OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or
    # OTEL_EXPORTER_OTLP_ENDPOINT plus /v1/traces (see otel_traces_endpoint).
    otlp_traces_endpoint: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read ``COMPUTEBUS_<FIELD>`` (and ``NATS_URL``); raise ``SettingsError`` on bad values."""
        values: dict[str, Any] = {}
        for field in fields(cls):
            name = env_name(field.name)
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            values[field.name] = _parse(name, raw, _PARSERS[field.name])
        if "otlp_traces_endpoint" not in values:
            values["otlp_traces_endpoint"] = otel_traces_endpoint(env)
        return cls(**values).checked()

    @property
    def ops_open(self) -> bool:
        """Whether /metrics, /openapi.json and /docs answer without a token."""
        if self.ops_public is not None:
            return self.ops_public
        return self.host in ("localhost", "::1") or self.host.startswith("127.")

    def store_limits(self) -> StoreLimits:
        return StoreLimits(
            monitor_max_bytes=self.monitor_max_bytes,
            dead_letter_max_bytes=self.dead_letter_max_bytes,
            dead_letter_max_age_s=self.dead_letter_max_age_s,
            async_dedupe_window_s=self.async_dedupe_window_s,
            async_ack_wait_s=self.async_ack_wait_s,
            async_max_bytes=self.async_max_bytes,
            replicas=self.replicas,
        )

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None}).checked()

    def checked(self) -> Settings:
        for name in (
            "max_body_bytes",
            "max_payload_bytes",
            "max_bundle_bytes",
            "max_timeout_ms",
            "log_cap_bytes",
            "pool_per_revision",
            "worker_concurrency",
            "function_concurrency",
            "idle_s",
            "async_dedupe_window_s",
            "async_ack_wait_s",
            "async_concurrency",
            "async_max_bytes",
            "dead_letter_max_age_s",
            "replicas",
            "metrics_max_functions",
            "live_streams_max",
        ):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{env_name(name)} must be positive, got {getattr(self, name)}")
        if self.collection_bundle_max_bytes < self.max_bundle_bytes:
            raise SettingsError(
                f"{env_name('collection_bundle_max_bytes')} must be at least "
                f"{env_name('max_bundle_bytes')} ({self.max_bundle_bytes}), "
                f"got {self.collection_bundle_max_bytes}"
            )
        for name in ("monitor_max_bytes", "dead_letter_max_bytes"):
            if getattr(self, name) < MIN_COLLECTION_BUDGET:
                raise SettingsError(
                    f"{env_name(name)} must be at least {MIN_COLLECTION_BUDGET} (16 MiB), "
                    f"got {getattr(self, name)}"
                )
        if self.spares < 0:
            raise SettingsError(f"{env_name('spares')} must be 0 or more, got {self.spares}")
        if self.isolation not in ISOLATION_LEVELS:
            raise SettingsError(
                f"{env_name('isolation')} must be one of {', '.join(ISOLATION_LEVELS)}, "
                f"got {self.isolation!r}"
            )
        first, last = self.sandbox_uids
        if not 0 < first <= last < 2**31:
            raise SettingsError(
                f"{env_name('sandbox_uids')} must be FIRST-LAST within 1-{2**31 - 1}"
            )
        for name in ("port", "worker_metrics_port"):
            port = getattr(self, name)
            if port is not None and not 0 <= port <= 65535:
                raise SettingsError(f"{env_name(name)} must be 0-65535, got {port}")
        endpoint = self.otlp_traces_endpoint
        if endpoint and not endpoint.startswith(("http://", "https://")):
            raise SettingsError(
                f"{env_name('otlp_traces_endpoint')} (or OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT) "
                f"must be an http:// or https:// URL (OTLP over HTTP), got {endpoint!r}"
            )
        for origin in self.cors_origins:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise SettingsError(
                    f"{env_name('cors_origins')}: {origin!r} is not an origin "
                    "(scheme://host[:port], no path) nor *"
                )
        return self


def role_nats_url(settings: Settings, role: str) -> str:
    """NATS_URL, with ``role``'s own user from ``nats_credentials`` when that is set."""
    assert settings.nats_url is not None
    if settings.nats_credentials is None:
        return settings.nats_url
    path = settings.nats_credentials
    try:
        password = json.loads(path.read_text())["users"][role]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SettingsError(
            f"{env_name('nats_credentials')}: no password for the {role} user in {path} ({exc!r})"
        ) from None
    return with_credentials(settings.nats_url, role, password)


def otel_traces_endpoint(env: Mapping[str, str]) -> str:
    """Where OpenTelemetry's standard variables send traces: the signal's own endpoint as it is,
    or the general one with ``/v1/traces`` added; "" when unset or turned off
    (``OTEL_SDK_DISABLED=true``, ``OTEL_TRACES_EXPORTER=none``). Only OTLP over HTTP with
    protobuf is spoken: another protocol is refused rather than sent to the wrong port."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ""
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return ""
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if not endpoint and (general := env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()):
        endpoint = general.rstrip("/") + "/v1/traces"
    if not endpoint:
        return ""
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = env.get(name, "").strip()
        if protocol:
            if protocol != "http/protobuf":
                raise SettingsError(
                    f"{name}={protocol!r}: computebus exports traces only as http/protobuf"
                )
            break
    return endpoint


def env_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    return "NATS_URL" if field == "nats_url" else f"COMPUTEBUS_{field.upper()}"


# COMPUTEBUS_ variables that are not settings of a server role: the CLI's API address and
# token, the log level and format (read before settings, checked by executor.log_format), and
# what the test suite reads.
_NOT_SETTINGS = (
    "COMPUTEBUS_API",
    "COMPUTEBUS_LOG_LEVEL",
    "COMPUTEBUS_LOG_FORMAT",
    "COMPUTEBUS_TOKEN",
)
_NOT_SETTINGS_PREFIXES = ("COMPUTEBUS_TEST_",)


def unknown_settings(env: Mapping[str, str]) -> list[str]:
    """A warning for each ``COMPUTEBUS_*`` variable that sets nothing (a typo, most likely),
    with the nearest setting's name."""
    known = [env_name(field.name) for field in fields(Settings)]
    # Compared without the prefix every name shares, which would make all of them alike.
    tails = {known_name.removeprefix("COMPUTEBUS_"): known_name for known_name in known}
    warnings = []
    for name in sorted(env):
        if not name.startswith("COMPUTEBUS_") or name in known or name in _NOT_SETTINGS:
            continue
        if name.startswith(_NOT_SETTINGS_PREFIXES):
            continue
        near = difflib.get_close_matches(name.removeprefix("COMPUTEBUS_"), tails, n=1, cutoff=0.6)
        hint = f" (did you mean {tails[near[0]]}?)" if near else ""
        warnings.append(f"{name} is not a computebus setting and is ignored{hint}")
    return warnings


def _uid_range(raw: str) -> tuple[int, int]:
    first, sep, last = raw.partition("-")
    if not sep:
        raise ValueError("not a uid range FIRST-LAST")
    return int(first), int(last)


def _comma_list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _boolean(raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError("not a boolean (true or false)")


def _parse(name: str, raw: str, parser: Callable[[str], Any]) -> Any:
    try:
        return parser(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r}: {exc}") from None


# A field's parser follows from its annotation (``str | None`` parses as ``str``).
_BY_TYPE: dict[Any, Callable[[str], Any]] = {
    int: int,
    float: float,
    str: str,
    Path: Path,
    bool: _boolean,
    tuple[int, int]: _uid_range,
    tuple[str, ...]: _comma_list,
}


def _parser_for(annotation: Any) -> Callable[[str], Any]:
    options = [t for t in typing.get_args(annotation) if t is not type(None)]
    if isinstance(annotation, types.UnionType) and len(options) == 1:
        annotation = options[0]
    return _BY_TYPE[annotation]


_PARSERS: dict[str, Callable[[str], Any]] = {
    name: _parser_for(annotation) for name, annotation in typing.get_type_hints(Settings).items()
}
