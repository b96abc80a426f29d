"""One warm handler process: spawn it, hand it one invocation at a time, kill and reap it.

The worker talks to the process over two dedicated pipes (requests in, replies out); the process's
stdout and stderr share a third pipe that is read all the time into a per-invocation log buffer
capped at ``log_cap`` bytes (the rest is read and dropped, so a flood costs the worker nothing).
Nothing else of the worker reaches the process: it is started with ``subprocess.Popen``
(``close_fds``), not the event loop's subprocess support (uvloop's passes every inheritable fd),
and its exit is watched through a pidfd.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from executor.runtime.confinement import FREEZE_AFTER_S, Confinement
from schemas.errors import ComputebusError
from schemas.handler_protocol import HEADER, NONCE_BYTES, HandlerReply, frame, reply_decoder

_READ_CHUNK = 1 << 16
_KILLS: set[asyncio.Task[None]] = set()  # kills started by a protocol breach between invocations


class ProcessGone(ComputebusError):
    """The handler process exited or closed its reply pipe mid-invocation."""


class ReplyTooLarge(ProcessGone):
    """The handler announced a reply over the limit; the process is killed unread."""


class ForgedReply(ProcessGone):
    """A reply frame nobody asked for, or with another request's nonce; the process is killed."""


@dataclass(frozen=True)
class Logs:
    """What a handler printed during one call, capped."""

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
    """One sandboxed handler process: its pipes, nonce-checked frames, logs and lifetime."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        request_fd: int,
        reply_fd: int,
        log_fd: int,
        log_cap: int,
        confinement: Confinement,
        max_reply_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.process = process
        self.confinement = confinement
        self.out_of_memory = False
        self.max_reply_bytes = max_reply_bytes
        self.pid = process.pid
        self._request_fd = request_fd
        self._reply_fd = reply_fd
        self._log_fd = log_fd
        self._logs = _LogBuffer(log_cap)
        self._reply_buf = bytearray()
        self._waiter: asyncio.Future[HandlerReply] | None = None
        self._nonce = b""
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._gone = False
        self._exited = self._loop.create_future()
        self._pidfd = os.pidfd_open(process.pid)
        self.last_used = time.monotonic()
        self.invocations = 0
        self._loop.add_reader(reply_fd, self._on_reply_readable)
        self._loop.add_reader(log_fd, self._on_log_readable)
        self._loop.add_reader(self._pidfd, self._on_exit)

    @classmethod
    async def spawn(
        cls,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        cwd: str,
        log_cap: int,
        confinement: Confinement,
        preexec: Callable[[], None] | None = None,
        setup_fds: tuple[int, ...] = (),
        max_reply_bytes: int = 64 * 1024 * 1024,
        in_thread: bool = False,
    ) -> HandlerProcess:
        """Start ``argv`` with the two pipe fds appended; ``setup_fds`` (the sandbox's own setup
        fds) are passed too and closed here once the child has them. ``in_thread``: fork and
        wait for the exec in a thread, not blocking the event loop meanwhile (the fork and the
        child's setup take milliseconds); only for a start nobody cancels."""
        request_r, request_w = os.pipe()
        reply_r, reply_w = os.pipe()
        log_r, log_w = os.pipe()
        child_fds = (request_r, reply_w)
        try:

            def start() -> subprocess.Popen[bytes]:
                return subprocess.Popen(
                    [*argv, *(str(fd) for fd in child_fds)],
                    stdin=subprocess.DEVNULL,
                    stdout=log_w,
                    stderr=log_w,
                    pass_fds=(*child_fds, *setup_fds),
                    close_fds=True,
                    env=env,
                    cwd=cwd,
                    start_new_session=True,
                    preexec_fn=preexec,
                )

            process = await asyncio.to_thread(start) if in_thread else start()
        except BaseException:
            for fd in (request_r, request_w, reply_r, reply_w, log_r, log_w):
                os.close(fd)
            raise
        finally:
            for fd in setup_fds:
                os.close(fd)
        for fd in (request_r, reply_w, log_w):
            os.close(fd)
        for fd in (request_w, reply_r, log_r):
            os.set_blocking(fd, False)
        return cls(process, request_w, reply_r, log_r, log_cap, confinement, max_reply_bytes)

    @property
    def alive(self) -> bool:
        return not (self._closed or self._gone) and self.process.returncode is None

    @property
    def well_behaved(self) -> bool:
        """Alive, and used no CPU since its last invocation (nothing it left running ran)."""
        return self.alive and not self.confinement.used_cpu_while_idle()

    async def invoke(self, request: bytes, timeout_s: float) -> tuple[HandlerReply, Logs]:
        """Send one request and wait for its reply; raises TimeoutError or ProcessGone."""
        if self._closed:
            raise ProcessGone("handler process is closed")
        self.invocations += 1
        in_steady_use = time.monotonic() - self.last_used < FREEZE_AFTER_S
        waiter = self._waiter = self._loop.create_future()
        self._nonce = os.urandom(NONCE_BYTES)
        try:
            # The timeout covers the write too: a process that stops reading its requests
            # cannot hold the worker past it.
            async with asyncio.timeout(timeout_s):
                self.confinement.resume()
                await self._write(frame(request, self._nonce))
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
        self.confinement.pause(at_once=not in_steady_use)
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
            size, nonce = HEADER.unpack_from(self._reply_buf)
            waiter = self._waiter
            if waiter is None or waiter.done() or nonce != self._nonce:
                self._stop_reading(ForgedReply("the handler wrote a reply nobody asked for"))
                return
            if size > self.max_reply_bytes:  # refuse to buffer it: the worker's memory is shared
                self._stop_reading(ReplyTooLarge(f"the handler's reply is {size} bytes"))
                return
            if len(self._reply_buf) < HEADER.size + size:
                return
            body = bytes(self._reply_buf[HEADER.size : HEADER.size + size])
            del self._reply_buf[: HEADER.size + size]
            try:
                waiter.set_result(reply_decoder.decode(body))
            except Exception as exc:
                waiter.set_exception(ProcessGone(f"unreadable reply from handler: {exc}"))

    def _stop_reading(self, exc: ProcessGone) -> None:
        """The process broke the protocol: fail the invocation under way, kill the process."""
        self._loop.remove_reader(self._reply_fd)
        self._gone = True
        if self._waiter is not None and not self._waiter.done():
            self._fail(exc)
        else:  # between invocations: nobody waits, so the kill is ours to start
            task = self._loop.create_task(self.kill())
            _KILLS.add(task)
            task.add_done_callback(_KILLS.discard)

    def _on_exit(self) -> None:
        self._loop.remove_reader(self._pidfd)
        self.process.poll()  # reaps it
        if not self._exited.done():
            self._exited.set_result(None)

    async def _wait_exit(self) -> None:
        await self._exited
        if self.process.returncode is None:  # the pidfd fired before the exit was visible
            await asyncio.to_thread(self.process.wait)

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
        self.confinement.cancel_freeze()
        await asyncio.to_thread(self.confinement.kill_all)
        await self._wait_exit()
        self.out_of_memory = self.confinement.oom_killed()
        self.confinement.release()
        for fd in (self._reply_fd, self._log_fd, self._pidfd):
            self._loop.remove_reader(fd)
        for fd in (self._request_fd, self._reply_fd, self._log_fd, self._pidfd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fail(ProcessGone("handler process was killed"))
