"""Server-sent events (``text/event-stream``): a response that writes what its source pushes,
until the client goes away, the source ends, the API stops or the caller may no longer read it;
and the cap on how many one API process has open.

The response follows its source (subscribes) before it sends anything, so a failure there is
still an ordinary error answer, and then says ``: ready``: a client knows that whatever happens
after that line reaches it. A comment every ``ping_s`` keeps proxies from closing an idle
stream. The client going away is heard at once (ASGI's ``http.disconnect``), not at the next
write, and ends the source (unsubscribes) with it. Whether the caller still may (its token not
revoked or expired since the stream began) is asked before each event and ping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from executor.settings import env_name
from schemas.errors import RateLimited, Unavailable

log = logging.getLogger("computebus.api")

PING_S = 15.0
RETRY_MS = 3000  # how long a browser's EventSource waits before it reconnects
# Frames waiting for a slow client: past either bound, newer ones are dropped. A record can be
# near NATS's max_payload (megabytes, with payloads kept), so a count alone bounds nothing.
_QUEUE_MAX = 1000
_QUEUE_MAX_BYTES = 8 << 20  # one frame is always let in, however big, when none is waiting
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # the latter: nginx

Push = Callable[[bytes | None], None]  # a frame to send, or None: the stream is over
Source = Callable[[Push], AbstractAsyncContextManager[None]]
Allowed = Callable[[], bool]  # whether the stream's caller may still read it


def event_frame(event: str, event_id: str, data: bytes) -> bytes:
    """One event; ``data`` on as many ``data:`` lines as it has lines (JSON has one)."""
    lines = data.splitlines() or [b""]
    head = f"event: {event}\nid: {event_id}\n".encode()
    return head + b"".join(b"data: " + line + b"\n" for line in lines) + b"\n"


class EventStreams:
    """The event streams of one API process: at most ``limit`` open; ``close`` ends them all
    (the API stopping: an open stream must not hold up its drain)."""

    def __init__(self, limit: int, *, ping_s: float = PING_S) -> None:
        self.limit = limit
        self.ping_s = ping_s
        self._open: set[EventStream] = set()
        self._closed = False

    @property
    def count(self) -> int:
        return len(self._open)

    def response(self, source: Source, allowed: Allowed = lambda: True) -> EventStream:
        return EventStream(self, source, allowed)

    def take(self, stream: EventStream) -> None:
        if self._closed:
            raise Unavailable("the API is stopping; reconnect to another")
        if len(self._open) >= self.limit:
            raise RateLimited(
                f"this API process already has {self.limit} live streams open, its limit "
                f"({env_name('live_streams_max')}); close one or retry later",
                retry_after_s=5,
            )
        self._open.add(stream)

    def release(self, stream: EventStream) -> None:
        self._open.discard(stream)

    def close(self) -> None:
        self._closed = True
        for stream in list(self._open):
            stream.push(None)


class EventStream(Response):
    """One client's stream. Frames wait in a queue bounded by count and bytes: a client too
    slow to read them loses the newest (counted in the log when it ends) rather than growing
    the API's memory."""

    media_type = "text/event-stream"

    def __init__(self, streams: EventStreams, source: Source, allowed: Allowed) -> None:
        self.status_code = 200
        self.background = None
        self.init_headers(_HEADERS)
        self._streams = streams
        self._source = source
        self._allowed = allowed
        self._frames: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._queued_bytes = 0
        self._dropped = 0

    def push(self, frame: bytes | None) -> None:
        if frame is not None:
            waiting = self._frames.qsize()
            too_many = waiting >= _QUEUE_MAX
            if too_many or (waiting and self._queued_bytes + len(frame) > _QUEUE_MAX_BYTES):
                self._dropped += 1
                return
            self._queued_bytes += len(frame)
        self._frames.put_nowait(frame)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._streams.take(self)
        try:
            async with self._source(self.push):
                await self._serve(receive, send)
        finally:
            self._streams.release(self)
            if self._dropped:
                log.warning("a live stream's client was too slow: %d events dropped", self._dropped)

    async def _serve(self, receive: Receive, send: Send) -> None:
        listener = asyncio.create_task(self._until_disconnect(receive))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await self._write(send, f"retry: {RETRY_MS}\n\n: ready\n\n".encode())
            while True:
                try:
                    frame = await asyncio.wait_for(self._frames.get(), self._streams.ping_s)
                except TimeoutError:
                    frame = b": ping\n\n"
                else:
                    self._queued_bytes -= len(frame or b"")
                if frame is None or not self._allowed():
                    break
                await self._write(send, frame)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _until_disconnect(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.push(None)

    @staticmethod
    async def _write(send: Send, chunk: bytes) -> None:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
