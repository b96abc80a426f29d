"""What a worker does with an invocation it has no room for: it hands it to the queue group
again rather than refusing, so no caller hears ``overloaded`` while another worker has room.

Two parts:
- ``Intake`` holds the worker's subscription to the invoke queue group, and gives it up while
  the worker is full (a drain: what was delivered is still taken, and handed on), so nats-server
  routes new invocations only to workers with room; it subscribes again once there is room.
- ``pass_on`` hands one invocation to the queue group as a request of the worker's own and
  relays the answer to the caller. nats-server picks a member at random, perhaps a worker that
  refused it already: ``Compute-Hops`` counts the hand-overs and ``Compute-Refused-By`` names
  the workers that had no room. Once ``MAX_REFUSALS`` different workers refused it, after
  ``MAX_HOPS`` hand-overs, or when no worker answers, the caller hears ``overloaded``. (A worker
  that is full as a whole is not picked at all; one full only for the function may be, so
  with most workers full for a function a call can still be refused while one has room, with
  a chance of at most (full share)^16.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from bus import subjects
from schemas.headers import H_HOPS, H_REFUSED_BY

log = logging.getLogger("computebus.worker")

MAX_HOPS = 16
MAX_REFUSALS = 4
_MAX_REFUSED_CHARS = 1024
_PENDING_MSGS = 65536
_PENDING_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class Route:
    """How far an invocation has been handed on, and which workers had no room for it."""

    hops: int
    refused_by: tuple[str, ...]

    def onward(self, worker: str) -> Route | None:
        """The route after ``worker`` refuses it too; None when it should be refused for good."""
        refused = self.refused_by if worker in self.refused_by else (*self.refused_by, worker)
        if self.hops + 1 > MAX_HOPS or len(refused) >= MAX_REFUSALS:
            return None
        return Route(self.hops + 1, refused)


def route_of(msg: Msg) -> Route:
    """The route in the headers (a bad one ends the hand-overs)."""
    headers = msg.headers or {}
    raw = headers.get(H_HOPS, "0")
    refused = headers.get(H_REFUSED_BY, "")
    if not (raw.isdigit() and len(raw) < 3) or len(refused) > _MAX_REFUSED_CHARS:
        return Route(MAX_HOPS, ())
    return Route(int(raw), tuple(w for w in refused.split(",") if w))


async def pass_on(nc: Client, msg: Msg, route: Route, timeout_s: float) -> Msg | None:
    """Hand ``msg`` to the queue group again; the answer, or None when no worker took it."""
    headers = {
        **(msg.headers or {}),
        H_HOPS: str(route.hops),
        H_REFUSED_BY: ",".join(route.refused_by),
    }
    try:
        return await nc.request(msg.subject, msg.data, timeout=timeout_s, headers=headers)
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
        return None


class Intake:
    """The worker's subscription to invocations, given up while the worker is full."""

    def __init__(self, nc: Client, on_invoke: Callable[[Msg], Awaitable[None]]) -> None:
        self.nc = nc
        self.on_invoke = on_invoke
        self._sub: Subscription | None = None
        self._lock = asyncio.Lock()
        self._want = True  # whether the worker wants invocations now
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    @property
    def taking(self) -> bool:
        return self._sub is not None

    async def open(self) -> None:
        async with self._lock:
            await self._subscribe()

    def full(self) -> None:
        """The worker has no room: stop taking invocations until ``room``."""
        if self._want:
            self._want = False
            self._settle()

    def room(self) -> None:
        if not self._want and not self._closed:
            self._want = True
            self._settle()

    async def close(self) -> None:
        """Stop for good (draining what was delivered)."""
        self._closed, self._want = True, False
        async with self._lock:
            await self._unsubscribe()

    def _settle(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._follow())

    async def _follow(self) -> None:
        """Bring the subscription in line with ``_want`` (which may change while we work)."""
        async with self._lock:
            while (self._sub is not None) != self._want:
                if self._want:
                    await self._subscribe()
                else:
                    await self._unsubscribe()

    async def _subscribe(self) -> None:
        self._sub = await self.nc.subscribe(
            subjects.INVOKE_WILDCARD,
            queue=subjects.WORKER_QUEUE,
            cb=self.on_invoke,
            pending_msgs_limit=_PENDING_MSGS,
            pending_bytes_limit=_PENDING_BYTES,
        )
        log.debug("taking invocations again")

    async def _unsubscribe(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            log.debug("full: handing invocations to the other workers")
            with contextlib.suppress(Exception):
                await sub.drain()  # type: ignore[no-untyped-call]
