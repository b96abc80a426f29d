"""Which Async message a worker runs next: one lane per function with queued work, each pulling
from that function's own consumer, the worker's slots shared between lanes (async_fairness).

A lane learns it has work from the bell (a worker of all hears each publish on the Async
subjects) or from a look at the stream's subjects every ``_LOOK_EVERY_S`` (publishes another
worker heard, retries whose backoff ended, redeliveries after a lost worker).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from bus.async_queue import AsyncQueue
from bus.consumer_pull import ConsumerPull
from executor.tasks import TaskSet
from executor.worker.fair_share import share_out

log = logging.getLogger("computebus.async")

Key = tuple[str, str]

_LOOK_EVERY_S = 0.5
_FETCH_WAIT_S = 0.2  # a lane's pull lingers this long for work that is not there yet
# After an empty pull a lane waits before the next (doubling up to the cap), unless the bell
# rings: its messages are in another worker's hands or waiting out a backoff.
_QUIET_FIRST_S = 0.5
_QUIET_MAX_S = 8.0
_STRAGGLER_WAIT_S = 0.2
_WARN_EVERY_S = 60.0


@dataclass
class _Lane:
    key: Key
    pull: ConsumerPull | None = None
    running: int = 0
    fetching: int = 0  # slots its pull under way holds for messages still to come
    pulling: bool = False  # a pull is under way (one at a time)
    ready: bool = True
    quiet_until: float = 0.0
    empty_pulls: int = 0
    # When the retries this worker handed back with a backoff come due (monotonic time).
    retries_due: list[float] = field(default_factory=list)

    def heard(self) -> None:
        self.ready, self.quiet_until, self.empty_pulls = True, 0.0, 0


class AsyncDispatcher:
    """Pulls Async messages for a worker, one lane per function, sharing its slots fairly."""

    def __init__(
        self,
        nc: Client,
        queue: AsyncQueue,
        slots: int,
        run: Callable[[Msg], Awaitable[None]],
    ) -> None:
        self.nc = nc
        self.queue = queue
        self.slots = slots
        self.run = run
        self._lanes: dict[Key, _Lane] = {}
        self._order: collections.deque[Key] = collections.deque()
        self._tasks = TaskSet("Async invocation")
        self._fetches = TaskSet("Async pull")
        self._naks = TaskSet("Async hand-back")
        self._wake = asyncio.Event()
        self._pulling = False
        self._loop_task: asyncio.Task[None] | None = None
        self._bell: Subscription | None = None
        self._warned_at = -_WARN_EVERY_S

    async def start(self) -> None:
        self._bell = await self.queue.ring_on_submit(self.nc, self._ring)
        self._pulling = True
        self._loop_task = asyncio.create_task(self._dispatch_loop())

    async def _ring(self, key: Key) -> None:
        self._lane(key).heard()
        self._wake.set()

    def retry_later(self, key: Key, delay_s: float) -> None:
        """A run of ``key`` was handed back to come again after ``delay_s`` (its backoff): until
        then that message is no reason to pull."""
        self._lane(key).retries_due.append(time.monotonic() + delay_s)

    def _lane(self, key: Key) -> _Lane:
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(key)
            self._order.append(key)
        return lane

    async def _dispatch_loop(self) -> None:
        next_look = 0.0
        while self._pulling:
            self._wake.clear()
            now = time.monotonic()
            if now >= next_look:
                await self._look(now)
                next_look = time.monotonic() + _LOOK_EVERY_S
            self._grant()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_look - time.monotonic()))

    async def _look(self, now: float) -> None:
        """Mark the lanes whose function has messages in the stream; forget idle lanes."""
        try:
            queued = await self.queue.queued()
        except Exception as exc:
            self._warn("async stream look", exc)
            return
        for key, count in queued.items():
            lane = self._lane(key)
            lane.retries_due = [due for due in lane.retries_due if due > now]
            if count > lane.running + len(lane.retries_due) and now >= lane.quiet_until:
                lane.ready = True
        gone = [k for k, lane in self._lanes.items() if k not in queued and _idle(lane)]
        for key in gone:
            lane = self._lanes.pop(key)
            self._order.remove(key)
            if lane.pull is not None:
                self._naks.spawn(_close(lane.pull))

    def _grant(self) -> None:
        held = {k: lane.running + lane.fetching for k, lane in self._lanes.items()}
        free = self.slots - sum(held.values())
        if free <= 0 or not self._pulling:
            return
        waiting = [k for k in self._order if self._lanes[k].ready and not self._lanes[k].pulling]
        grants = share_out(free, held, waiting, self.slots)
        self._order.rotate(-1)  # ties go to another lane next time
        for key, count in grants.items():
            lane = self._lanes[key]
            # Counted now: the next grant may come before the pull starts.
            lane.fetching, lane.pulling = count, True
            self._fetches.spawn(self._fetch(lane, count))

    async def _fetch(self, lane: _Lane, count: int) -> None:
        got = 0
        try:
            if lane.pull is None:
                lane.pull = await self.queue.lane(
                    self.nc, *lane.key, lambda msg: self._take(lane, msg), self.slots * 4
                )
            got = await lane.pull.pull(count, _FETCH_WAIT_S)
        except Exception as exc:  # disconnected, or the consumer went idle and was removed
            self._warn(f"async pull for {lane.key}", exc)
            if lane.pull is not None:
                self._naks.spawn(_close(lane.pull))
            lane.pull = None
        finally:
            lane.fetching, lane.pulling = 0, False
            self._wake.set()
        if got:
            lane.empty_pulls = 0
        else:
            quiet = min(_QUIET_MAX_S, _QUIET_FIRST_S * 2**lane.empty_pulls)
            lane.quiet_until = time.monotonic() + quiet
            lane.empty_pulls += 1
        if got < count:
            lane.ready = False

    def _take(self, lane: _Lane, msg: Msg) -> None:
        """Run ``msg``, or hand it straight back when stopping or full (a message can come after
        its pull ended, or while the worker stops)."""
        lane.fetching = max(0, lane.fetching - 1)  # a slot its pull held is now running
        if not self._pulling or len(self._tasks) >= self.slots:
            self._hand_back(msg)
            return
        lane.running += 1

        def done(task: asyncio.Task[None]) -> None:
            lane.running -= 1
            self._wake.set()

        self._tasks.spawn(self.run(msg)).add_done_callback(done)

    def _hand_back(self, msg: Msg) -> None:
        async def nak() -> None:
            with contextlib.suppress(Exception):
                await msg.nak()

        self._naks.spawn(nak())

    def _warn(self, what: str, exc: Exception) -> None:
        now = time.monotonic()
        quiet = self.nc.is_reconnecting or now - self._warned_at < _WARN_EVERY_S
        if not quiet:
            self._warned_at = now
        log.log(logging.DEBUG if quiet else logging.WARNING, "%s: %r", what, exc)

    @property
    def in_flight(self) -> int:
        """Async invocations running on this worker now."""
        return len(self._tasks)

    async def stop(self, deadline_s: float) -> None:
        """Stop pulling, let what runs finish within ``deadline_s``; hand back the rest."""
        self._pulling = False
        self._wake.set()
        if self._bell is not None:
            with contextlib.suppress(Exception):
                await self._bell.unsubscribe()
        if self._loop_task is not None:
            await self._loop_task
        await self._fetches.wait()  # each ends within _FETCH_WAIT_S
        # A pull's messages can arrive just after it stopped waiting: they are handed back.
        await asyncio.sleep(_STRAGGLER_WAIT_S)
        await self._tasks.drain(deadline_s)
        await self._naks.wait(5)
        pulls = [lane.pull for lane in self._lanes.values() if lane.pull is not None]
        await asyncio.gather(*(_close(pull) for pull in pulls))


def _idle(lane: _Lane) -> bool:
    return not lane.ready and lane.running == 0 and not lane.pulling


async def _close(pull: ConsumerPull) -> None:
    with contextlib.suppress(Exception):
        await pull.close()
