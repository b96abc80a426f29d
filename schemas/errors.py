"""The one error hierarchy of computebus, and its mapping to wire codes and HTTP statuses.

Every failure a caller can see is a ``ComputeError`` subclass (under ``ComputebusError``, the
root, beside ``SetupError``); its ``code``, ``status`` and
whether an Async run that failed so is tried again (``retryable``) are stated here and nowhere
else, so HTTP responses, NATS error replies, monitor records and the retry policy agree.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ComputebusError(Exception):
    """The root of every error computebus raises on purpose: a ``ComputeError`` for a caller,
    a ``SetupError`` for whoever runs it, and the internal signals between its parts."""


class SetupError(ComputebusError):
    """A fault of this machine's setup or of a role's start (a runtime or bubblewrap missing, a
    bad setting, a role that exited), not an answer to a caller: one line that names the fix,
    which the CLI prints before it exits with 2."""


class ComputeError(ComputebusError):
    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    # Worth another Async attempt: the handler raised, or the run hit a limit or lost its
    # worker. Never: bad input or request, a missing function or export, an output that breaks
    # the schema, a result too large, an expired deadline (running again fails the same way).
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def to_body(self) -> dict[str, Any]:
        return {"error": self.message, "code": self.code, "details": self.details}

    def http_headers(self) -> dict[str, str]:
        """Headers an HTTP answer with this error carries."""
        return {}


class InvalidRequest(ComputeError):
    code = "invalid_request"
    status = 400


class InvalidInput(ComputeError):
    code = "invalid_input"
    status = 400


class FunctionNotFound(ComputeError):
    code = "function_not_found"
    status = 404


class NotFound(ComputeError):
    code = "not_found"
    status = 404


class FunctionExists(ComputeError):
    code = "function_exists"
    status = 409


class IncompatibleSchema(ComputeError):
    code = "incompatible_schema"
    status = 409


class Conflict(ComputeError):
    """The request does not fit the current state (e.g. a retry of an invocation under way)."""

    code = "conflict"
    status = 409


class PayloadTooLarge(ComputeError):
    code = "payload_too_large"
    status = 413


class Overloaded(ComputeError):
    code = "overloaded"
    status = 429
    retryable = True
    retry_after_s: ClassVar[int] = 1

    def http_headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class RateLimited(ComputeError):
    """Over the function's ``limits.rps`` (with its ``burst``)."""

    code = "rate_limited"
    status = 429

    def __init__(
        self, message: str, details: list[dict[str, Any]] | None = None, retry_after_s: int = 1
    ) -> None:
        super().__init__(message, details)
        self.retry_after_s = retry_after_s

    def http_headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class Unauthorized(ComputeError):
    """No token, or one that is malformed, unknown, expired or revoked."""

    code = "unauthorized"
    status = 401

    def http_headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="computebus"'}


class Forbidden(ComputeError):
    """A valid token without the scope the request needs."""

    code = "forbidden"
    status = 403


class FunctionFailed(ComputeError):
    code = "function_error"
    status = 500
    retryable = True


class HandlerNotFound(ComputeError):
    code = "handler_not_found"
    status = 500


class OutOfMemory(ComputeError):
    code = "out_of_memory"
    status = 500
    retryable = True


class InternalError(ComputeError):
    code = "internal_error"
    status = 500
    retryable = True


class InvalidOutput(ComputeError):
    code = "invalid_output"
    status = 502


class WorkerLost(ComputeError):
    """The worker running an invocation vanished (killed, or cut off from the bus): a sync
    caller hears it within seconds; an Async run is retried, or recorded so."""

    code = "worker_lost"
    status = 503
    retryable = True


class Expired(ComputeError):
    """An Async invocation still queued past its Compute-Deadline: it never ran."""

    code = "expired"
    status = 504


class Unavailable(ComputeError):
    """No worker, or NATS did not answer in time (it is restarting): worth a retry soon."""

    code = "unavailable"
    status = 503
    retryable = True
    retry_after_s: ClassVar[int] = 1

    def http_headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class Timeout(ComputeError):
    code = "timeout"
    status = 504
    retryable = True


class StorageFull(ComputeError):
    """The bus cannot set aside a new collection's storage budget (its disk is spoken for)."""

    code = "storage_full"
    status = 507


def _wire_errors(base: type[ComputeError]) -> list[type[ComputeError]]:
    """``base`` and every subclass that states a code of its own."""
    found = [base] if "code" in vars(base) else []
    for sub in base.__subclasses__():
        found += _wire_errors(sub)
    return found


ERRORS_BY_CODE: dict[str, type[ComputeError]] = {
    cls.code: cls for cls in _wire_errors(ComputeError)
}
RETRYABLE_CODES = frozenset(code for code, cls in ERRORS_BY_CODE.items() if cls.retryable)


def error_from_code(
    code: str, message: str, details: list[dict[str, Any]] | None = None
) -> ComputeError:
    """Rebuild an error that crossed the bus as a code and a message."""
    return ERRORS_BY_CODE.get(code, InternalError)(message, details)


def detail(path: str, message: str) -> dict[str, Any]:
    return {"path": path, "message": message}
