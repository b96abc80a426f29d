"""Runs inside a Python handler process. Standard library only: it must not see computebus.

argv: request fd, reply fd; or ``--check DIR`` (start, make sure DIR can be entered, exit: the
worker's start-up check). The first request is the process's assignment: its workspace, the
handler's file and export, and the function's env_vars; every later one is an invocation. It may
wait long for the first (a spare started ahead of time), with everything it imports imported.
Frames on both pipes are a 4-byte big-endian length, an 8-byte nonce and a JSON document; a
reply carries its request's nonce.
"""

import asyncio
import importlib.util
import inspect
import json
import os
import struct
import sys
import traceback
from collections.abc import Callable
from typing import Any

HEADER = struct.Struct(">I8s")
CHECK_UNREADABLE = 3  # the --check directory cannot be entered by this uid


class Context(dict[str, Any]):
    """The invocation context, readable as ``context.invocation_id`` or ``context["..."]``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def read_exact(fd: int, n: int) -> bytes | None:
    chunks: list[bytes] = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def write_reply(fd: int, nonce: bytes, body: bytes) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    data = HEADER.pack(len(body), nonce) + body
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def error(code: str, kind: str, message: str) -> bytes:
    reply = {"ok": False, "error": {"code": code, "type": kind, "message": message}}
    return json.dumps(reply).encode()


class HandlerMissing(Exception):
    """The handler's file loaded but has no such callable export."""


def load(workspace: str, rel_file: str, export: str) -> Callable[..., Any]:
    """Import the handler's file by its path, so a name the bootstrap already imported (``json``)
    still means the user's file. Siblings are found through ``sys.path`` (set up in ``main``)."""
    name = os.path.splitext(os.path.basename(rel_file))[0]
    key = name if name not in sys.modules else f"_computebus_handler_{name}"
    spec = importlib.util.spec_from_file_location(key, os.path.join(workspace, rel_file))
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {rel_file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(key, None)
        raise
    handler: Callable[..., Any] | None = getattr(module, export, None)
    if not callable(handler):
        raise HandlerMissing(f"{rel_file} has no callable export {export!r}")
    return handler


def read_frame(fd: int) -> tuple[bytes, Any] | None:
    header = read_exact(fd, HEADER.size)
    if header is None:
        return None
    size, nonce = HEADER.unpack(header)
    body = read_exact(fd, size)
    if body is None:
        return None
    return nonce, json.loads(body)


def take_assignment(fd: int, reply_fd: int) -> tuple[str, str, str] | None:
    """The first frame: set the function's env_vars (they come over the pipe, so nothing that
    ran as root before this process saw them) and enter the workspace."""
    found = read_frame(fd)
    if found is None:
        return None
    nonce, request = found
    assignment = request["assign"]
    for item in assignment["env"]:
        name, _, value = item.partition("=")
        os.environ[name] = value
    workspace, rel_file = assignment["workspace"], assignment["file"]
    os.chdir(workspace)
    sys.argv = [rel_file]
    module_dir = os.path.join(workspace, os.path.dirname(rel_file))
    sys.path[:0] = [module_dir, workspace] if module_dir != workspace else [workspace]
    write_reply(reply_fd, nonce, b'{"ok":true,"result":null}')
    return workspace, rel_file, assignment["export"]


def main() -> None:
    if sys.argv[1] == "--check":
        try:  # entering is all a handler needs of the workspaces' root (its own it reads)
            os.chdir(sys.argv[2])
        except OSError as exc:
            print(f"cannot enter {sys.argv[2]}: {exc.strerror}", file=sys.stderr)
            sys.exit(CHECK_UNREADABLE)
        return
    # Only the loader needed it (a relocated interpreter's libpython); functions may not set
    # LD_* themselves, so it is the sandbox's, and neither the handler nor its children see it.
    os.environ.pop("LD_LIBRARY_PATH", None)
    req_fd, reply_fd = int(sys.argv[1]), int(sys.argv[2])
    for fd in (req_fd, reply_fd):  # not for the processes a handler starts
        os.set_inheritable(fd, False)
    assigned = take_assignment(req_fd, reply_fd)
    if assigned is None:
        return
    workspace, rel_file, export = assigned
    handler: Callable[..., Any] | None = None
    while True:
        found = read_frame(req_fd)
        if found is None:
            return
        nonce, request = found
        if handler is None:
            # A failed load is answered and retried on the next request (the process stays, so
            # every call gets the same answer rather than a crash of a half-dead process).
            try:
                handler = load(workspace, rel_file, export)
            except HandlerMissing as exc:
                write_reply(
                    reply_fd, nonce, error("handler_not_found", "HandlerNotFound", str(exc))
                )
                continue
            except BaseException as exc:
                traceback.print_exc()
                write_reply(reply_fd, nonce, error("function_error", type(exc).__name__, str(exc)))
                continue
        if request.get("probe"):  # a load check: the handler loaded, do not call it
            write_reply(reply_fd, nonce, b'{"ok":true,"result":null}')
            continue
        write_reply(reply_fd, nonce, call(handler, request))


_loop: asyncio.AbstractEventLoop | None = None


def run_coroutine(awaitable: Any) -> Any:
    """One event loop for every async handler call, made on the first (a sync handler's
    process then holds no fds beyond its pipes and stdio)."""
    global _loop
    if _loop is None:
        _loop = asyncio.new_event_loop()
    return _loop.run_until_complete(awaitable)


def call(handler: Callable[..., Any], request: dict[str, Any]) -> bytes:
    try:
        result = handler(request["event"], Context(request["context"]))
        if inspect.isawaitable(result):
            result = run_coroutine(result)
    except MemoryError:
        return error("out_of_memory", "MemoryError", "the handler ran out of memory")
    except Exception as exc:
        traceback.print_exc()
        return error("function_error", type(exc).__name__, str(exc))
    try:
        encoded = json.dumps(result, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        return error("invalid_output", type(exc).__name__, f"result is not JSON: {exc}")
    return b'{"ok":true,"result":' + encoded.encode() + b"}"


if __name__ == "__main__":
    main()
