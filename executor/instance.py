"""One warm handler process: spawn it, hand it one invocation at a time, kill and reap it.

The worker talks to the process over two dedicated pipes (requests in, replies out); the process's
stdout and stderr share a third pipe that is read all the time into a per-invocation log buffer
capped at ``log_cap`` bytes (the rest is read and dropped, so a flood costs the worker nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from executor.sandbox import ProcessCgroup
from schemas.handler_protocol import HEADER, HandlerReply, frame, reply_decoder

_READ_CHUNK = 1 << 16


class ProcessGone(Exception):
    """The handler process exited or closed its reply pipe mid-invocation."""


class ReplyTooLarge(ProcessGone):
    """The handler announced a reply over the limit; the process is killed unread."""


@dataclass(frozen=True)
class Logs:
    text: str
    truncated: bool


class _LogBuffer:
    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()
        self.dropped = 0

    def feed(self, chunk: bytes) -> None:
        room = self.cap - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        self.dropped += max(0, len(chunk) - max(room, 0))

    def take(self) -> Logs:
        logs = Logs(self.data.decode("utf-8", "replace"), self.dropped > 0)
        self.data = bytearray()
        self.dropped = 0
        return logs


class HandlerProcess:
    def __init__(
        self,
        process: asyncio.subprocess.Process,
        request_fd: int,
        reply_fd: int,
        log_fd: int,
        log_cap: int,
        cgroup: ProcessCgroup | None = None,
        max_reply_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.process = process
        self.cgroup = cgroup
        self.out_of_memory = False
        self.max_reply_bytes = max_reply_bytes
        self.pid = process.pid
        self._request_fd = request_fd
        self._reply_fd = reply_fd
        self._log_fd = log_fd
        self._logs = _LogBuffer(log_cap)
        self._reply_buf = bytearray()
        self._waiter: asyncio.Future[HandlerReply] | None = None
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._gone = False
        self.last_used = time.monotonic()
        self.invocations = 0
        self._loop.add_reader(reply_fd, self._on_reply_readable)
        self._loop.add_reader(log_fd, self._on_log_readable)

    @classmethod
    async def spawn(
        cls,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        cwd: str,
        log_cap: int,
        preexec: Callable[[], None] | None = None,
        cgroup: ProcessCgroup | None = None,
        max_reply_bytes: int = 64 * 1024 * 1024,
    ) -> HandlerProcess:
        request_r, request_w = os.pipe()
        reply_r, reply_w = os.pipe()
        log_r, log_w = os.pipe()
        child_fds = (request_r, reply_w)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                *(str(fd) for fd in child_fds),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_w,
                stderr=log_w,
                pass_fds=child_fds,
                env=env,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=preexec,
            )
        except BaseException:
            for fd in (request_r, request_w, reply_r, reply_w, log_r, log_w):
                os.close(fd)
            raise
        for fd in (request_r, reply_w, log_w):
            os.close(fd)
        for fd in (request_w, reply_r, log_r):
            os.set_blocking(fd, False)
        return cls(process, request_w, reply_r, log_r, log_cap, cgroup, max_reply_bytes)

    @property
    def alive(self) -> bool:
        return not (self._closed or self._gone) and self.process.returncode is None

    async def invoke(self, request: bytes, timeout_s: float) -> tuple[HandlerReply, Logs]:
        """Send one request and wait for its reply; raises TimeoutError or ProcessGone."""
        if self._closed:
            raise ProcessGone("handler process is closed")
        self.invocations += 1
        waiter = self._waiter = self._loop.create_future()
        try:
            # The timeout covers the write too: a process that stops reading its requests
            # cannot hold the worker past it.
            async with asyncio.timeout(timeout_s):
                await self._write(frame(request))
                reply = await waiter
        except (TimeoutError, ProcessGone):
            await self.kill()
            raise
        except OSError as exc:  # after TimeoutError, which is an OSError too
            await self.kill()
            raise ProcessGone(str(exc)) from exc
        finally:
            self._waiter = None
            self.last_used = time.monotonic()
        self._drain_logs()
        return reply, self._logs.take()

    def take_logs(self) -> Logs:
        """Whatever was printed since the last invocation (used after a crash or a timeout)."""
        self._drain_logs()
        return self._logs.take()

    async def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._request_fd, view) :]
            except BlockingIOError:
                writable = self._loop.create_future()
                self._loop.add_writer(self._request_fd, writable.set_result, None)
                try:
                    await writable
                finally:
                    self._loop.remove_writer(self._request_fd)
            except BrokenPipeError as exc:
                raise ProcessGone("handler process closed its request pipe") from exc

    def _on_reply_readable(self) -> None:
        try:
            chunk = os.read(self._reply_fd, _READ_CHUNK)
        except BlockingIOError:
            return
        if not chunk:
            self._loop.remove_reader(self._reply_fd)
            self._gone = True
            self._fail(ProcessGone("handler process exited"))
            return
        self._reply_buf += chunk
        while len(self._reply_buf) >= HEADER.size:
            (size,) = HEADER.unpack_from(self._reply_buf)
            if size > self.max_reply_bytes:  # refuse to buffer it: the worker's memory is shared
                self._loop.remove_reader(self._reply_fd)
                self._gone = True
                self._fail(ReplyTooLarge(f"the handler's reply is {size} bytes"))
                return
            if len(self._reply_buf) < HEADER.size + size:
                return
            body = bytes(self._reply_buf[HEADER.size : HEADER.size + size])
            del self._reply_buf[: HEADER.size + size]
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                try:
                    waiter.set_result(reply_decoder.decode(body))
                except Exception as exc:
                    waiter.set_exception(ProcessGone(f"unreadable reply from handler: {exc}"))

    def _fail(self, exc: Exception) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _on_log_readable(self) -> None:
        self._drain_logs()

    def _drain_logs(self) -> None:
        if self._closed:
            return
        while True:
            try:
                chunk = os.read(self._log_fd, _READ_CHUNK)
            except BlockingIOError:
                return
            if not chunk:
                self._loop.remove_reader(self._log_fd)
                return
            self._logs.feed(chunk)

    async def kill(self) -> None:
        """SIGKILL the process group and everything in its cgroup (the sandbox, and what the
        handler started there, even after setsid), reap the process, close our pipe ends.
        Idempotent."""
        if self._closed:
            return
        self._drain_logs()
        self._closed = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        if self.cgroup is not None:
            await asyncio.to_thread(self.cgroup.kill_all)
        await self.process.wait()
        if self.cgroup is not None:
            self.out_of_memory = self.cgroup.oom_killed()
            self.cgroup.remove()
        for fd in (self._reply_fd, self._log_fd):
            self._loop.remove_reader(fd)
        for fd in (self._request_fd, self._reply_fd, self._log_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fail(ProcessGone("handler process was killed"))
