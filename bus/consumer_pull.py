"""Pulling from one durable JetStream consumer with the pull protocol's plain requests.

nats-py's pull subscription keeps what a pull brings in a client-side queue that only its
``fetch`` reads, so a message the server delivers just after a fetch stopped waiting sits there
unseen until its ack wait runs out. Here every message goes to ``deliver`` as it arrives,
whichever pull asked for it, and the caller decides to run it or hand it back.

Each pull replies to its own inbox subject, so the status that ends an old pull (``408`` when
its wait ran out) never ends a newer one. JetStream's messages carry their own subject and an
ack subject (which a status never has); one pull is under way at a time.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from schemas.errors import ComputebusError

_ENDED = {"404", "408"}  # no messages (now), or the pull's wait ran out
_GRACE_S = 1.0  # past its wait, a pull whose end the server never announced is over


class PullFailed(ComputebusError):
    """The consumer could not be pulled from: it is gone, or the server refused the pull."""


@dataclass
class _Waiting:
    token: str
    batch: int
    ended: asyncio.Future[str | None]  # None, or the status that refused it
    got: int = 0


class ConsumerPull:
    """One durable consumer's pull requests, and the inbox its messages arrive at."""

    def __init__(
        self, nc: Client, stream: str, durable: str, deliver: Callable[[Msg], None]
    ) -> None:
        self.nc = nc
        self.deliver = deliver
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = nc.new_inbox()
        self._tokens = itertools.count()
        self._waiting: _Waiting | None = None
        self._sub: Subscription | None = None

    async def open(self, pending_msgs_limit: int) -> None:
        self._sub = await self.nc.subscribe(
            f"{self._inbox}.*", cb=self._arrived, pending_msgs_limit=pending_msgs_limit
        )

    async def close(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    async def pull(self, batch: int, wait_s: float) -> int:
        """Up to ``batch`` messages: what is there now, or else what comes within ``wait_s``;
        returns how many came before the pull ended. Raises ``PullFailed``. One at a time."""
        got = await self._request(batch, {"batch": batch, "no_wait": True}, 0.0)
        if got:
            return got
        return await self._request(batch, {"batch": batch, "expires": int(wait_s * 1e9)}, wait_s)

    async def _request(self, batch: int, request: dict[str, object], wait_s: float) -> int:
        token = str(next(self._tokens))
        waiting = _Waiting(token, batch, asyncio.get_running_loop().create_future())
        self._waiting = waiting
        try:
            reply = f"{self._inbox}.{token}"
            await self.nc.publish(self._next_subject, json.dumps(request).encode(), reply=reply)
            refused = await asyncio.wait_for(asyncio.shield(waiting.ended), wait_s + _GRACE_S)
        except TimeoutError:
            if waiting.got == 0:  # not even a status: the consumer may be gone
                raise PullFailed(f"no answer to a pull on {self._next_subject}") from None
            refused = None
        finally:
            self._waiting = None
        if refused is not None:
            raise PullFailed(f"pull on {self._next_subject} refused: {refused}")
        return waiting.got

    async def _arrived(self, msg: Msg) -> None:
        waiting = self._waiting
        if not msg.reply:  # a status, on its pull's own inbox subject
            if waiting is None or msg.subject.rpartition(".")[2] != waiting.token:
                return  # it ends an earlier pull, which is over
            headers = msg.headers or {}
            status = headers.get("Status", "")
            if status not in _ENDED:
                detail = next((v for k, v in headers.items() if k == "Description"), "")
                _end(waiting, f"{status} {detail}".strip())
            _end(waiting, None)
            return
        # A message carries its own subject, not its pull's; it counts for the pull under way.
        if waiting is not None:
            waiting.got += 1
            if waiting.got >= waiting.batch:
                _end(waiting, None)
        self.deliver(msg)


def _end(waiting: _Waiting, refused: str | None) -> None:
    if not waiting.ended.done():
        waiting.ended.set_result(refused)
