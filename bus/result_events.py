"""Result events (``.result.succeeded`` / ``.result.failed``), published until the server has
confirmed them: plain NATS forgets what was written to a server that dies before it routed it,
so events sent since the last confirmation (a flush's PONG) are sent again once the connection
is back. An event is thus delivered at least once; across a server failure a subscriber may see
one twice (the same ``invocation_id``), never none.

``following`` is the other side: one function's result events, for a reader that wants them
as they come (the API's live stream)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from bus import subjects

log = logging.getLogger("computebus.bus")

_BATCH_S = 0.5  # events are confirmed together, a flush per batch (a PING: not per event)
_FLUSH_TIMEOUT_S = 2
_MAX_HELD = 100_000  # unconfirmed events kept for sending again (beyond: the oldest go)
_FOLLOW_PENDING = 10_000  # a follower's events not yet handed on (beyond: nats-py drops them)


class ResultEvents:
    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self._unconfirmed: list[tuple[str, bytes]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._confirm())

    async def publish(self, subject: str, data: bytes) -> None:
        await self.nc.publish(subject, data)
        self._unconfirmed.append((subject, data))
        if len(self._unconfirmed) > _MAX_HELD:
            del self._unconfirmed[: len(self._unconfirmed) - _MAX_HELD]
        self._wake.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.nc.flush(timeout=_FLUSH_TIMEOUT_S)

    async def _confirm(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(_BATCH_S)
            sent = len(self._unconfirmed)
            try:
                await self.nc.flush(timeout=_FLUSH_TIMEOUT_S)
            except Exception:
                await self._send_again()
                continue
            del self._unconfirmed[:sent]

    async def _send_again(self) -> None:
        """Once connected again, send every unconfirmed event again."""
        while not self.nc.is_connected:
            if self.nc.is_closed:
                return
            await asyncio.sleep(0.1)
        log.info("sending %d result event(s) again after a reconnect", len(self._unconfirmed))
        for subject, data in list(self._unconfirmed):
            with contextlib.suppress(Exception):
                await self.nc.publish(subject, data)
        self._wake.set()


@contextlib.asynccontextmanager
async def following(
    nc: Client, ct: str, ft: str, on_result: Callable[[bytes], None], on_deleted: Callable[[], None]
) -> AsyncIterator[None]:
    """Hand each result event of function ``ft`` to ``on_result`` (its body, the monitor record
    as published) and its deletion to ``on_deleted``, while inside. On entry the server has the
    subscriptions: nothing published after that is missed. They are gone on exit."""

    async def result(msg: Msg) -> None:
        on_result(msg.data)

    async def deleted(msg: Msg) -> None:
        on_deleted()

    subs: list[Subscription] = []
    try:
        for subject, cb in (
            (subjects.result_subject(ct, ft, "*"), result),
            (subjects.event_subject(ct, ft, "deleted"), deleted),
        ):
            subs.append(await nc.subscribe(subject, cb=cb, pending_msgs_limit=_FOLLOW_PENDING))
        await nc.flush(timeout=_FLUSH_TIMEOUT_S)
        yield
    finally:
        for sub in subs:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
