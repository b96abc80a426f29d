"""Every NATS subject, stream and bucket name computebus uses is spelled here and only here."""

from __future__ import annotations

PREFIX = "ms.compute"
WORKER_QUEUE = "computebus-workers"
INVOKE_WILDCARD = f"{PREFIX}.*.function.*"
WORKER_PING = "computebus.workers.ping"
WORKER_ALIVE = "computebus.workers.alive"  # each worker's heartbeat (the API's worker watch)
WORKER_PROBE = "computebus.workers.probe"  # load a revision's handler without running it
WORKER_SYNC = "computebus.workers.sync"  # take this function record now (after a change)
API_PING = "computebus.apis.ping"  # the API processes answer (they share rate limits out)

# NATS micro service discovery (ADR-32): every worker answers as one instance of this service.
SERVICE_NAME = "computebus"
SRV_PREFIX = "$SRV"
SRV_VERBS = ("PING", "INFO", "STATS")
# What the computebus account answers of $SRV: the plain forms and those naming computebus.
SRV_WILDCARDS = (
    f"{SRV_PREFIX}.*",
    f"{SRV_PREFIX}.*.{SERVICE_NAME}",
    f"{SRV_PREFIX}.*.{SERVICE_NAME}.*",
)

ASYNC_STREAM = "COMPUTEBUS_ASYNC"
ASYNC_WILDCARD = f"{PREFIX}.*.function.*.async"
ASYNC_LEGACY_CONSUMER = "computebus-async-workers"  # the one shared consumer of old, removed
ASYNC_BELL_QUEUE = "computebus-async-bell"
DEAD_LETTER_PREFIX = "computebus.dead"
SHARED_DEAD_LETTER_STREAM = "COMPUTEBUS_DEAD_LETTERS"  # before one stream per collection

FUNCTIONS_BUCKET = "computebus_functions"
TOKENS_BUCKET = "computebus_tokens"
TRIGGERS_BUCKET = "computebus_triggers"
INTERNAL_BUCKET = "computebus_internal"  # what only the roles share (the caller seal key)
BUNDLES_BUCKET = "computebus_bundles"
MONITOR_PREFIX = "computebus.monitor"
SHARED_MONITOR_STREAM = "COMPUTEBUS_MONITOR"  # before one stream per collection
MONITOR_STREAM_PREFIX = "COMPUTEBUS_MONITOR_"  # + the collection
DEAD_LETTER_STREAM_PREFIX = "COMPUTEBUS_DEAD_LETTERS_"


# JetStream's API, read raw for the fields nats-py's types drop (a stream's first_ts).
JS_STREAM_LIST = "$JS.API.STREAM.LIST"


def js_consumer_list(stream: str) -> str:
    return f"$JS.API.CONSUMER.LIST.{stream}"


LIFECYCLE_EVENTS = ("created", "updated", "deleted", "promoted")
RESULT_STATUSES = ("succeeded", "failed")


def srv_subjects(verb: str, service_id: str) -> tuple[str, str, str]:
    """``$SRV.<verb>``, ``$SRV.<verb>.computebus`` and ``$SRV.<verb>.computebus.<id>``."""
    plain = f"{SRV_PREFIX}.{verb}"
    named = f"{plain}.{SERVICE_NAME}"
    return plain, named, f"{named}.{service_id}"


def function_subject(ct: str, ft: str) -> str:
    return f"{PREFIX}.{ct}.function.{ft}"


def async_subject(ct: str, ft: str) -> str:
    return f"{function_subject(ct, ft)}.async"


def async_consumer(ct: str, ft: str) -> str:
    """The durable consumer of one function's Async invocations (unique: ``ft`` is 9 digits)."""
    return f"computebus-async-{ct}-{ft}"


def parse_async_subject(subject: str) -> tuple[str, str] | None:
    """``ms.compute.<ct>.function.<ft>.async`` -> (ct, ft); None for anything else."""
    head, dot, last = subject.rpartition(".")
    if not dot or last != "async":
        return None
    return parse_function_subject(head)


def dead_letter_stream(ct: str) -> str:
    return f"{DEAD_LETTER_STREAM_PREFIX}{ct}"


def dead_letter_subject(ct: str, ft: str, invocation_id: str) -> str:
    return f"{DEAD_LETTER_PREFIX}.{ct}.{ft}.{invocation_id}"


def dead_letter_filter(ct: str, ft: str = "*") -> str:
    return f"{DEAD_LETTER_PREFIX}.{ct}.{ft}.*"


def event_subject(ct: str, ft: str, event: str) -> str:
    return f"{function_subject(ct, ft)}.event.{event}"


def result_subject(ct: str, ft: str, status: str) -> str:
    return f"{function_subject(ct, ft)}.result.{status}"


def parse_function_subject(subject: str) -> tuple[str, str] | None:
    """``ms.compute.<ct>.function.<ft>`` -> (ct, ft); None for anything else."""
    parts = subject.split(".")
    if len(parts) != 5 or parts[0] != "ms" or parts[1] != "compute" or parts[3] != "function":
        return None
    return parts[2], parts[4]


def monitor_stream(ct: str) -> str:
    return f"{MONITOR_STREAM_PREFIX}{ct}"


def monitor_subject(ct: str, ft: str, invocation_id: str) -> str:
    return f"{MONITOR_PREFIX}.{ct}.{ft}.{invocation_id}"


def monitor_filter(ct: str, ft: str = "*") -> str:
    return f"{MONITOR_PREFIX}.{ct}.{ft}.*"


# Registry keys (JetStream KV keys are subject-like tokens).
def function_key(ct: str, ft: str) -> str:
    return f"fn.{ct}.{ft}"


def function_key_filter(ct: str = "*") -> str:
    return f"fn.{ct}.*"


def name_key(ct: str, name_hash: str) -> str:
    return f"name.{ct}.{name_hash}"


def revision_key(ct: str, ft: str, number: int) -> str:
    return f"rev.{ct}.{ft}.{number}"


def revision_key_filter(ct: str = "*", ft: str = "*") -> str:
    return f"rev.{ct}.{ft}.*"


# Trigger keys: ``trg.<ct>.<ft>.<id>`` each trigger, ``route.<method>.<path hash>`` the claim
# on an HTTP route's method and path (KV create decides which of two creates gets it).
def trigger_key(ct: str, ft: str, trigger_id: str) -> str:
    return f"trg.{ct}.{ft}.{trigger_id}"


def trigger_key_filter(ct: str = "*", ft: str = "*") -> str:
    return f"trg.{ct}.{ft}.*"


def route_claim_key(method: str, path_hash: str) -> str:
    return f"route.{method}.{path_hash}"


def kv_subject(key_filter: str) -> str:
    """The stream subject under which the registry bucket stores ``key_filter``."""
    return f"$KV.{FUNCTIONS_BUCKET}.{key_filter}"


FUNCTIONS_STREAM = f"KV_{FUNCTIONS_BUCKET}"


# Schedules (JetStream message schedules, ADR-51): the latest message on a schedule's subject is
# the schedule; each tick the server stores on the tick subject, which the Async stream sources
# (rewritten to the function's .async subject), so ticks are Async invocations.
SCHEDULES_STREAM = "COMPUTEBUS_SCHEDULES"
SCHEDULE_PREFIX = "computebus.schedules"
TICK_PREFIX = "computebus.ticks"
TICK_SOURCE = f"{TICK_PREFIX}.*.*.*"
TICK_AS_ASYNC = f"{PREFIX}.{{{{wildcard(1)}}}}.function.{{{{wildcard(2)}}}}.async"


def schedule_subject(ct: str, ft: str, name: str) -> str:
    return f"{SCHEDULE_PREFIX}.{ct}.{ft}.{name}"


def schedule_filter(ct: str, ft: str) -> str:
    return f"{SCHEDULE_PREFIX}.{ct}.{ft}.*"


def tick_subject(ct: str, ft: str, name: str) -> str:
    return f"{TICK_PREFIX}.{ct}.{ft}.{name}"


def tick_filter(ct: str, ft: str) -> str:
    return f"{TICK_PREFIX}.{ct}.{ft}.*"


def parse_schedule_subject(subject: str) -> tuple[str, str, str] | None:
    """``computebus.schedules.<ct>.<ft>.<name>`` -> (ct, ft, name); None for anything else."""
    head, dot, rest = subject.partition(f"{SCHEDULE_PREFIX}.")
    parts = rest.split(".")
    if head or not dot or len(parts) != 3:
        return None
    return parts[0], parts[1], parts[2]


# Subject triggers: one stream per trigger captures its source subject, and the Async stream
# sources it, rewritten to the function's .async subject (bus/subject_triggers.py). What the
# APP account publishes reaches the COMPUTEBUS account under APP_IMPORT_PREFIX (nats_users).
TRIGGER_STREAM_PREFIX = "COMPUTEBUS_TRIGGER_"
APP_IMPORT_PREFIX = "computebus.app"


def trigger_stream(trigger_id: str, alias: str) -> str:
    """The stream of a subject trigger, named with the alias it invokes: the worker reads both
    off the ``Nats-Stream-Source`` header of each message, with no lookup (ids are
    ``trg_<16 hex>``, aliases DNS labels, so the name parses back)."""
    return f"{TRIGGER_STREAM_PREFIX}{trigger_id}_{alias}"


def parse_trigger_stream(stream: str) -> tuple[str, str] | None:
    """(trigger id, alias) of a trigger's stream name; None for another stream."""
    rest = stream.removeprefix(TRIGGER_STREAM_PREFIX)
    trigger_id, sep, alias = rest[:20], rest[20:21], rest[21:]
    if rest == stream or sep != "_" or not trigger_id.startswith("trg_") or not alias:
        return None
    return trigger_id, alias


def app_subject(subject: str) -> str:
    """``subject`` as published in the APP account, as the COMPUTEBUS account sees it."""
    return f"{APP_IMPORT_PREFIX}.{subject}"


def from_app_subject(subject: str) -> str:
    return subject.removeprefix(f"{APP_IMPORT_PREFIX}.")
