"""One log line per invocation a worker finishes, sync or Async (each Async attempt its own):
the function, revision, invocation id, kind, status and code, duration and worker. Logged after
the caller has its answer; nothing is built unless the line's level is on.

INFO for a success and for a caller's mistake (4xx); WARNING for a failure of the function or
the platform (5xx: ``function_error``, ``timeout``, ``out_of_memory``, ``invalid_output``, ...).
Never the payload, the result, the handler's logs nor the error's message (a handler's message
may quote its input): the invocation id finds all of that in the monitor record.
"""

from __future__ import annotations

import logging

from bus.registry_view import RegistryView
from executor.worker.invoke import Outcome
from schemas.invocations import CallerInfo

log = logging.getLogger("computebus.invocation")

_TEXT = "%s rev %s %s: %s %s%s in %s ms; invocation %s, worker %s"


class InvocationLog:
    """The invocation lines of one worker (the view names each function)."""

    def __init__(self, view: RegistryView, worker_id: str) -> None:
        self.view = view
        self.worker_id = worker_id

    def done(
        self, outcome: Outcome, function: tuple[str, str], invocation_id: str, attempt: int = 0
    ) -> None:
        """``attempt``: which run of an Async invocation this was (0 for a sync one)."""
        error = outcome.error
        level = logging.WARNING if error is not None and error.status >= 500 else logging.INFO
        if not log.isEnabledFor(level):
            return
        ct, ft = function
        known = self.view.cached_function(ct, ft)
        name = f"{ct}/{known.name}" if known is not None else f"{ct}/{ft}"
        record = outcome.record
        revision = record.revision if record is not None else None
        duration_ms = record.duration_ms if record is not None else None
        caller = record.caller if record is not None else None
        via = None
        if isinstance(caller, CallerInfo):  # over HTTP a token or none; else a NATS client
            via = "nats" if caller.via == "nats" else "http"
        kind = "async" if attempt else "sync"
        fields = {
            "function": name,
            "collection_topic": ct,
            "service": ft,
            "revision": revision,
            "invocation_id": invocation_id,
            "kind": kind,
            "via": via,
            "status": "succeeded" if error is None else "failed",
            "code": None if error is None else error.code,
            "http_status": 200 if error is None else error.status,
            "duration_ms": duration_ms,
            "worker": self.worker_id,
            "trace_id": outcome.trace.trace_id if outcome.trace is not None else None,
        }
        how = f"{kind} over {via}" if via else kind
        if attempt:
            fields["attempt"] = attempt
            how = f"{how}, attempt {attempt}"
        log.log(
            level,
            _TEXT,
            f"{name} ({ft})" if known is not None else name,
            "-" if revision is None else revision,
            how,
            fields["status"],
            fields["http_status"],
            "" if error is None else f" {error.code}",
            "-" if duration_ms is None else duration_ms,
            invocation_id,
            self.worker_id,
            extra=fields,
        )
