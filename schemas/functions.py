"""Function bodies and records: what the create API takes, what the registry stores, what it shows.

Field names follow the Quiva create-function API (``compute_asset``, ``collection_topic``,
``asset_value``...) so its clients work unchanged.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from schemas.base import StoredStruct, Struct
from schemas.control import Blocker
from schemas.errors import InvalidRequest
from schemas.rates import check_rate
from schemas.schedules import ScheduleView
from schemas.triggers import Trigger

Runtime = Literal["nodejs", "python"]
RUNTIMES: tuple[str, ...] = ("nodejs", "python")
JsonSchema = dict[str, Any] | bool


class Asset(Struct):
    asset_name: str
    asset_value: str
    asset_type: str = "file"
    link: bool = False


class AssetMeta(Struct):
    """An asset as a revision remembers it: its bytes live in the bundle store."""

    asset_name: str
    asset_type: str
    link: bool
    size: int


class MonitorConfig(Struct):
    ttl: int = 604_800_000
    store_payload: bool = False


class AsyncConfig(Struct):
    """How Async invocations are retried: a failure that can pass (see ``RETRYABLE_CODES`` in
    ``schemas/errors.py``) runs again after ``backoff_ms``, doubling each time up to
    ``max_backoff_ms``, until ``max_attempts`` runs have been made."""

    max_attempts: int = 3
    backoff_ms: int = 1_000
    max_backoff_ms: int = 60_000


class AsyncConfigPatch(Struct):
    """``async_config`` in a PATCH: the fields given replace the function's, the rest stay."""

    max_attempts: int | UnsetType = UNSET
    backoff_ms: int | UnsetType = UNSET
    max_backoff_ms: int | UnsetType = UNSET

    def applied_to(self, config: AsyncConfig) -> AsyncConfig:
        changes = {k: v for k in self.__struct_fields__ if (v := getattr(self, k)) is not UNSET}
        return msgspec.structs.replace(config, **changes)


# Variables a function may not set: they would change how the runtime itself loads, or what
# the C library of a process that starts as root (bubblewrap, setpriv before its uid drop) loads
# from paths a handler controls (glibc's own list for setuid programs, and locale names, which
# glibc reads as paths when they hold a slash).
RESERVED_ENV_PREFIXES = ("LD_", "PYTHON", "NODE_", "COMPUTEBUS_", "NATS_", "MALLOC_", "LC_")
RESERVED_ENV_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "PWD",
        "TMPDIR",
        "LANG",
        "LANGUAGE",
        "GCONV_PATH",
        "GETCONF_DIR",
        "GLIBC_TUNABLES",
        "HOSTALIASES",
        "LOCALDOMAIN",
        "LOCPATH",
        "NIS_PATH",
        "NLSPATH",
        "RESOLV_HOST_CONF",
        "RES_OPTIONS",
        "TZDIR",
    }
)


MAX_ATTEMPTS_LIMIT = 20
MAX_BACKOFF_MS = 86_400_000  # one day between two attempts
MAX_TTL_MS = 366 * 86_400_000  # records are kept at most a year
MAX_DESCRIPTION_CHARS = 4096


def check_monitor_config(config: MonitorConfig) -> None:
    if not 0 < config.ttl <= MAX_TTL_MS:
        reason = f"must be 1 to {MAX_TTL_MS} milliseconds (366 days), got {config.ttl}"
        raise InvalidRequest(
            f"/monitor_config/ttl: {reason}", [{"path": "/monitor_config/ttl", "message": reason}]
        )


def check_description(description: str) -> None:
    if len(description) > MAX_DESCRIPTION_CHARS:
        reason = f"must be at most {MAX_DESCRIPTION_CHARS} characters, got {len(description)}"
        raise InvalidRequest(
            f"/description: {reason}", [{"path": "/description", "message": reason}]
        )


def check_async_config(config: AsyncConfig) -> None:
    """Raise ``InvalidRequest`` naming every field of ``config`` that is out of range."""
    problems: list[dict[str, Any]] = []
    if not 1 <= config.max_attempts <= MAX_ATTEMPTS_LIMIT:
        problems.append(
            {
                "path": "/async_config/max_attempts",
                "message": f"must be 1 to {MAX_ATTEMPTS_LIMIT}, got {config.max_attempts}",
            }
        )
    for name in ("backoff_ms", "max_backoff_ms"):
        value = getattr(config, name)
        if not 0 <= value <= MAX_BACKOFF_MS:
            reason = f"must be 0 to {MAX_BACKOFF_MS} milliseconds (one day), got {value}"
            problems.append({"path": f"/async_config/{name}", "message": reason})
    if config.max_backoff_ms < config.backoff_ms:
        problems.append(
            {"path": "/async_config/max_backoff_ms", "message": "must be at least backoff_ms"}
        )
    if problems:
        raise InvalidRequest(f"{problems[0]['path']}: {problems[0]['message']}", problems)


class FunctionSchema(Struct):
    input: JsonSchema | None = None
    output: JsonSchema | None = None


class ComputeAssetSpec(Struct):
    collection_topic: str
    handler: str
    assets: list[Asset]
    timeout: int = 30_000
    read_only_fs: bool = True
    runtime: Runtime = "nodejs"
    env_vars: list[str] = msgspec.field(default_factory=list)
    # Extension: outbound network for the handler (off by default; see the security model).
    network: bool = False


MAX_CONCURRENCY_LIMIT = 1000


class FunctionLimits(Struct):
    """``limits``: how much of a worker one function may take, like Lambda's reserved concurrency.
    ``max_concurrency`` bounds its invocations in flight (running or waiting for one of its warm
    processes) on each worker; past it that function alone answers 429. Unset: the worker's
    ``COMPUTEBUS_FUNCTION_CONCURRENCY``."""

    max_concurrency: int | None = None
    # Invocations per second over HTTP, across every API process, with bursts of ``burst``
    # (default: one second's worth); past it 429 rate_limited with Retry-After.
    rps: float | UnsetType = UNSET
    burst: int | UnsetType = UNSET


def check_limits(limits: FunctionLimits) -> None:
    value = limits.max_concurrency
    if value is not None and not 1 <= value <= MAX_CONCURRENCY_LIMIT:
        reason = f"must be 1 to {MAX_CONCURRENCY_LIMIT}, got {value}"
        problem = {"path": "/limits/max_concurrency", "message": reason}
        raise InvalidRequest(f"/limits/max_concurrency: {reason}", [problem])
    check_rate(limits.rps, limits.burst, "/limits")


class FunctionAccess(Struct):
    """``access``: ``public_invoke`` lets anyone invoke the function over HTTP without a token
    (like a function URL with no auth); everything else about it still needs one."""

    public_invoke: bool = False


class CreateFunctionRequest(Struct):
    name: str
    compute_asset: ComputeAssetSpec
    monitor_config: MonitorConfig
    description: str = ""
    schema: FunctionSchema = msgspec.field(default_factory=FunctionSchema)
    size: str = "256MB"
    # Extension: retries of Async invocations.
    async_config: AsyncConfig = msgspec.field(default_factory=AsyncConfig)
    # Extension: a function's share of each worker.
    limits: FunctionLimits = msgspec.field(default_factory=FunctionLimits)
    # Extension: who may invoke it without a token.
    access: FunctionAccess = msgspec.field(default_factory=FunctionAccess)


class ComputeAssetPatch(Struct):
    """``PATCH /compute/compute-assets/{ct}/{ft}``: what is given replaces the latest revision's."""

    collection_topic: str | UnsetType = UNSET
    service: str | UnsetType = UNSET
    handler: str | UnsetType = UNSET
    runtime: Runtime | UnsetType = UNSET
    assets: list[Asset] | UnsetType = UNSET
    timeout: int | UnsetType = UNSET
    env_vars: list[str] | UnsetType = UNSET
    read_only_fs: bool | UnsetType = UNSET
    network: bool | UnsetType = UNSET


class FunctionPatch(Struct):
    """``PATCH /compute/functions/{ct}/{ft}``: metadata, or ``schema``/``size`` (a new revision)."""

    name: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    monitor_config: MonitorConfig | UnsetType = UNSET
    async_config: AsyncConfigPatch | UnsetType = UNSET
    limits: FunctionLimits | UnsetType = UNSET
    access: FunctionAccess | UnsetType = UNSET
    schema: FunctionSchema | UnsetType = UNSET
    size: str | UnsetType = UNSET


class AliasTarget(Struct):
    revision_number: int


class Revision(StoredStruct):
    """One immutable, numbered version of a function's code and runtime configuration."""

    number: int
    created: int
    runtime: Runtime
    handler: str
    timeout: int
    read_only_fs: bool
    env_vars: list[str]
    size: str
    memory_mb: int
    schema: FunctionSchema
    bundle: str
    assets: list[AssetMeta]
    network: bool = False


class FunctionRecord(StoredStruct):
    """The stable function: identity, metadata and which revision each alias points at."""

    collection_topic: str
    service: str
    name: str
    description: str
    monitor_config: MonitorConfig
    created: int
    modified: int
    latest_revision: int
    aliases: dict[str, int]
    async_config: AsyncConfig = msgspec.field(default_factory=AsyncConfig)
    limits: FunctionLimits = msgspec.field(default_factory=FunctionLimits)
    access: FunctionAccess = msgspec.field(default_factory=FunctionAccess)


class ComputeAssetView(Struct):
    collection_topic: str
    service: str
    runtime: str
    handler: str
    timeout: int
    read_only_fs: bool
    env_vars: list[str] | UnsetType = UNSET
    assets: list[Asset] | UnsetType = UNSET
    network: bool | UnsetType = UNSET  # shown only when on


class FunctionView(Struct):
    """The function as the API shows it (the 201 body of create, and GET)."""

    description: str
    name: str
    runtime: str
    subject: str
    type: str
    modified: int
    compute_asset: ComputeAssetView
    monitor_config: MonitorConfig
    schema: FunctionSchema
    # Shown on GET; in the create answer only when not the defaults (its shape is Quiva's).
    async_config: AsyncConfig | UnsetType = UNSET
    limits: FunctionLimits | UnsetType = UNSET
    access: FunctionAccess | UnsetType = UNSET
    size: str | UnsetType = UNSET
    revision: int | UnsetType = UNSET
    aliases: dict[str, int] | UnsetType = UNSET
    created: int | UnsetType = UNSET
    # Of the latest revision: can it serve invocations (a worker loaded its handler)?
    publishable: bool | UnsetType = UNSET
    publish_blockers: list[Blocker] | UnsetType = UNSET
    # In the answer to a change that made a revision: its number (promoted or not).
    new_revision: int | UnsetType = UNSET
    # On GET, and in the event a schedule change publishes.
    schedules: list[ScheduleView] | UnsetType = UNSET
    # On GET and in trigger events: the function's triggers (HTTP routes...).
    triggers: list[Trigger] | UnsetType = UNSET


class RuntimeView(Struct):
    name: str
    available: bool
    version: str
