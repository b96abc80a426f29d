"""JetStream publishes that do not wait: each gets a future for its storage ack, and every ack
comes back on one wildcard inbox, read with msgspec.

nats-py's ``publish_async`` does the same at several times the cost per message (a NUID and
random bytes per token, a JSON parse and a dataclass per ack); a monitor record is written for
every invocation, so this is on the worker's hot path.
"""

from __future__ import annotations

import asyncio
import itertools

import msgspec
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

_NO_RESPONDERS = "503"  # no stream takes the subject


class _ApiError(msgspec.Struct):
    code: int = 0
    err_code: int = 0
    description: str = ""


class _Ack(msgspec.Struct):
    seq: int = 0
    error: _ApiError | None = None


_ack_decoder = msgspec.json.Decoder(_Ack)


class StreamPublisher:
    """Publishes to JetStream; at most ``max_pending`` wait for their ack at once (beyond, a
    publish waits for room)."""

    def __init__(self, nc: Client, max_pending: int = 4000) -> None:
        self.nc = nc
        self._max_pending = max_pending
        self._prefix = ""
        self._ids = itertools.count()
        self._pending: dict[str, asyncio.Future[int]] = {}
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._sub: Subscription | None = None

    async def publish(
        self, subject: str, data: bytes, headers: dict[str, str] | None = None
    ) -> asyncio.Future[int]:
        """Send now; the future has the stored message's sequence, or raises
        ``NoStreamResponseError`` (no stream takes ``subject``) or ``APIError``."""
        if self._sub is None:
            self._prefix = self.nc.new_inbox()
            self._sub = await self.nc.subscribe(f"{self._prefix}.*", cb=self._on_ack)
        while not self._room.is_set():
            await self._room.wait()
        token = str(next(self._ids))
        ack: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending[token] = ack
        self._idle.clear()
        if len(self._pending) >= self._max_pending:
            self._room.clear()
        ack.add_done_callback(lambda _: self._forget(token))
        try:
            await self.nc.publish(subject, data, reply=f"{self._prefix}.{token}", headers=headers)
        except BaseException:
            ack.cancel()
            raise
        return ack

    def _forget(self, token: str) -> None:
        self._pending.pop(token, None)
        if len(self._pending) < self._max_pending:
            self._room.set()
        if not self._pending:
            self._idle.set()

    async def _on_ack(self, msg: Msg) -> None:
        ack = self._pending.get(msg.subject[len(self._prefix) + 1 :])
        if ack is None or ack.done():
            return
        if msg.headers and msg.headers.get("Status") == _NO_RESPONDERS:
            ack.set_exception(nats.js.errors.NoStreamResponseError())
            return
        try:
            answer = _ack_decoder.decode(msg.data)
        except msgspec.DecodeError as exc:
            ack.set_exception(nats.js.errors.APIError(description=f"unreadable ack: {exc}"))
            return
        if answer.error is not None:
            error = answer.error
            ack.set_exception(
                nats.js.errors.APIError(
                    code=error.code, err_code=error.err_code, description=error.description
                )
            )
            return
        ack.set_result(answer.seq)

    async def wait_idle(self) -> None:
        """Until every publish sent so far has its ack (or failed)."""
        await self._idle.wait()
