"""Runs inside a Python handler process. Standard library only: it must not see computebus.

argv: workspace, handler file (relative), export name, request fd, reply fd.
Frames on both pipes are a 4-byte big-endian length and a JSON document.
"""

import asyncio
import importlib
import inspect
import json
import os
import struct
import sys
import traceback

HEADER = struct.Struct(">I")


class Context(dict):
    """The invocation context, readable as ``context.invocation_id`` or ``context["..."]``."""

    __getattr__ = dict.__getitem__


def read_exact(fd, n):
    chunks = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def write_reply(fd, body):
    sys.stdout.flush()
    sys.stderr.flush()
    data = HEADER.pack(len(body)) + body
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def error(code, kind, message):
    reply = {"ok": False, "error": {"code": code, "type": kind, "message": message}}
    return json.dumps(reply).encode()


def load(workspace, rel_file, export):
    module_dir = os.path.join(workspace, os.path.dirname(rel_file))
    sys.path[:0] = [module_dir, workspace] if module_dir != workspace else [workspace]
    name = os.path.splitext(os.path.basename(rel_file))[0]
    module = importlib.import_module(name)
    handler = getattr(module, export, None)
    if not callable(handler):
        raise LookupError(f"{rel_file} has no callable export {export!r}")
    return handler


def main():
    workspace, rel_file, export, req_fd, reply_fd = sys.argv[1:6]
    req_fd, reply_fd = int(req_fd), int(reply_fd)
    os.chdir(workspace)
    sys.argv = [rel_file]
    loop = asyncio.new_event_loop()
    handler = None
    while True:
        header = read_exact(req_fd, HEADER.size)
        if header is None:
            return
        request = json.loads(read_exact(req_fd, HEADER.unpack(header)[0]))
        if handler is None:
            try:
                handler = load(workspace, rel_file, export)
            except LookupError as exc:
                write_reply(reply_fd, error("handler_not_found", "HandlerNotFound", str(exc)))
                return
            except BaseException as exc:
                traceback.print_exc()
                write_reply(reply_fd, error("function_error", type(exc).__name__, str(exc)))
                return
        write_reply(reply_fd, call(loop, handler, request))


def call(loop, handler, request):
    try:
        result = handler(request["event"], Context(request["context"]))
        if inspect.isawaitable(result):
            result = loop.run_until_complete(result)
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
