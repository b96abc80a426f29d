"""A handler's failure reply as the error the caller sees."""

from __future__ import annotations

from typing import TYPE_CHECKING

from schemas.errors import (
    ComputeError,
    FunctionFailed,
    HandlerNotFound,
    InvalidOutput,
    OutOfMemory,
)
from schemas.handler_protocol import HandlerReply

if TYPE_CHECKING:
    from executor.worker.revisions import PreparedRevision


def reply_error(reply: HandlerReply, prepared: PreparedRevision) -> ComputeError:
    failure = reply.error
    if failure is None:
        return FunctionFailed("the handler process sent an error without a reason")
    if failure.code == "handler_not_found":
        export = prepared.revision.handler.rsplit(".", 1)[-1]
        return HandlerNotFound(
            f"{prepared.handler_file} has no export {export!r}",
            [{"file": prepared.handler_file, "export": export}],
        )
    if failure.code == "function_error":
        return FunctionFailed(
            f"the handler raised {failure.type}: {failure.message}",
            [{"type": failure.type, "message": failure.message}],
        )
    if failure.code == "out_of_memory":
        return OutOfMemory(failure.message)
    if failure.code == "invalid_output":
        return InvalidOutput(failure.message, [{"type": failure.type, "message": failure.message}])
    # Any other code would be a platform's (429 overloaded, 504 timeout...): never the handler's.
    return FunctionFailed(
        f"the handler process answered with an error code it may not use: {failure.code!r}",
        [{"type": failure.type, "message": failure.message}],
    )
