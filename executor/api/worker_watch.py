"""Sync calls to the workers that end early when the worker that took one goes silent.

The API sends each sync invocation with ``Compute-Taken``: the worker that takes it says so
there once the call has run ``TAKEN_AFTER_S`` (a quicker answer says it for free), and every
worker says it is alive every ``HEARTBEAT_S`` on
``computebus.workers.alive``. A call whose worker has not been heard of for ``LOST_AFTER_S``
ends with ``worker_lost`` (503), so a caller of a worker that was killed learns it within
seconds instead of at the end of its timeout; a call under way when this API's own connection
drops (its server died), or that no worker says it took within ``TAKEN_WITHIN_S``, ends with
``unavailable`` (503): the answer, or the call itself, may have been lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from bus import subjects
from schemas.codec import decoder_for
from schemas.control import HEARTBEAT_S, TAKEN_AFTER_S, Alive
from schemas.errors import Unavailable, WorkerLost
from schemas.headers import H_TAKEN

LOST_AFTER_S = 3 * HEARTBEAT_S
# A worker says it took a call TAKEN_AFTER_S after it read it; one that says nothing this long
# after the call was sent never got it (it went to a server that died on the way).
TAKEN_WITHIN_S = TAKEN_AFTER_S + 2.5
_CHECK_S = HEARTBEAT_S / 2
_NO_RESPONDERS = "503"


@dataclass
class _Call:
    answer: asyncio.Future[Msg]
    reconnects: int  # the connection's count when the call was sent
    sent: float
    worker: str = ""
    worker_reconnects: int = 0  # the worker's count when it took the call


class WorkerWatch:
    """Sends sync invocations and waits for their answers, watching the workers that run them."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self._prefix = nc.new_inbox()
        self._ids = itertools.count()
        self._calls: dict[str, _Call] = {}
        self._heard: dict[str, float] = {}  # worker -> when it was last heard of (monotonic)
        self._alive = decoder_for(Alive)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._subs = [
            await self.nc.subscribe(f"{self._prefix}.*", cb=self._on_answer),
            await self.nc.subscribe(subjects.WORKER_ALIVE, cb=self._on_alive),
        ]
        self._task = asyncio.create_task(self._watch())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def request(
        self, subject: str, payload: bytes, headers: dict[str, str], timeout_s: float
    ) -> Msg:
        """The worker's answer; raises NoRespondersError, TimeoutError or WorkerLost."""
        n = str(next(self._ids))
        loop = asyncio.get_running_loop()
        call = _Call(loop.create_future(), self._reconnects(), loop.time())
        self._calls[n] = call
        headers[H_TAKEN] = f"{self._prefix}.t{n}"
        try:
            await self.nc.publish(subject, payload, reply=f"{self._prefix}.r{n}", headers=headers)
            return await asyncio.wait_for(call.answer, timeout_s)
        except TimeoutError:
            raise nats.errors.TimeoutError from None
        finally:
            self._calls.pop(n, None)

    async def _on_answer(self, msg: Msg) -> None:
        last = msg.subject.rpartition(".")[2]  # r<n> (the answer) or t<n> (taken by)
        kind, n = last[:1], last[1:]
        call = self._calls.get(n)
        if call is None or call.answer.done():
            return
        if kind == "t":
            with contextlib.suppress(msgspec.DecodeError):
                taken = self._alive.decode(msg.data)
                call.worker, call.worker_reconnects = taken.worker, taken.reconnects
                self._heard.setdefault(call.worker, asyncio.get_running_loop().time())
        elif msg.headers and msg.headers.get("Status") == _NO_RESPONDERS and not msg.data:
            call.answer.set_exception(nats.errors.NoRespondersError())
        else:
            call.answer.set_result(msg)

    async def _on_alive(self, msg: Msg) -> None:
        try:
            alive = self._alive.decode(msg.data)
        except msgspec.DecodeError:
            return
        self._heard[alive.worker] = asyncio.get_running_loop().time()
        for call in self._calls.values():
            # Its answer may have gone to a server that died under the worker.
            cut_off = call.worker == alive.worker and alive.reconnects > call.worker_reconnects
            if cut_off and not call.answer.done():
                call.answer.set_exception(
                    Unavailable(
                        f"worker {alive.worker} lost its connection to the bus while running "
                        "the invocation; it may or may not have run: retry if the function "
                        "allows"
                    )
                )

    def _reconnects(self) -> int:
        return int(self.nc.stats.get("reconnects", 0))

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(_CHECK_S)
            now = loop.time()
            reconnects = self._reconnects()
            for call in list(self._calls.values()):
                if call.answer.done():
                    continue
                if not self.nc.is_connected or reconnects != call.reconnects:
                    # An answer sent while this API was cut off from its server is lost.
                    call.answer.set_exception(
                        Unavailable(
                            "the API lost its connection to the bus while waiting for the "
                            "answer; the invocation may or may not have run: retry if the "
                            "function allows"
                        )
                    )
                    continue
                if not call.worker:
                    if now - call.sent > TAKEN_WITHIN_S:  # lost on its way to a worker
                        call.answer.set_exception(
                            Unavailable(
                                f"no worker said it took the invocation within {TAKEN_WITHIN_S:g}s "
                                "(the request was lost, or every worker is stalled); it may "
                                "still run: retry if the function allows"
                            )
                        )
                    continue
                silent = now - self._heard.get(call.worker, now)
                if silent > LOST_AFTER_S:
                    call.answer.set_exception(
                        WorkerLost(
                            f"worker {call.worker} running this invocation has not been heard "
                            f"of for {silent:.1f}s (killed, or cut off from the bus); "
                            "it may or may not have finished: retry if the function allows"
                        )
                    )
            for worker, heard in list(self._heard.items()):  # forget workers long gone
                if now - heard > 60 and not any(c.worker == worker for c in self._calls.values()):
                    del self._heard[worker]
