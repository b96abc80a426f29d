"""Per-function and per-HTTP-route rate limits (``limits.rps`` with ``burst``) for HTTP
invocations, shared out between the API processes: each API keeps a token bucket per limited
function (and route) that refills at
``rps / n`` with room for ``burst / n``, where ``n`` is how many APIs answered its last ping.

Behind a balancer that spreads calls evenly the sum over all APIs stays at ``rps``; with skewed
traffic a busy API refuses early while a quiet one has room left (no calls are counted across
processes: that would put a bus round trip on every invocation).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass

from msgspec import UNSET, UnsetType
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from bus import subjects
from bus.workers import count_answers
from schemas.errors import RateLimited
from schemas.functions import FunctionLimits
from schemas.triggers import RouteLimits

log = logging.getLogger("computebus.api")

_COUNT_EVERY_S = 2.0
_MAX_WAIT_S = 3600


@dataclass
class _Bucket:
    tokens: float
    updated: float  # monotonic


class RateLimits:
    """This API's token buckets, and how many APIs share each function's rate."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.apis = 1
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(subjects.API_PING, cb=self._answer)
        self._task = asyncio.create_task(self._count_apis())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def _answer(self, msg: Msg) -> None:
        if msg.reply:
            await msg.respond(b"{}")

    async def _count_apis(self) -> None:
        while True:
            try:
                self.apis = max(1, await count_answers(self.nc, subjects.API_PING))
            except Exception as exc:  # the bus is away: keep the last count
                log.debug("counting APIs: %r", exc)
            await asyncio.sleep(_COUNT_EVERY_S)

    def take(self, ct: str, ft: str, limits: FunctionLimits) -> None:
        """Spend one call of the function's rate here; raise ``RateLimited`` when none is left."""
        if limits.rps is not UNSET:
            self._spend((ct, ft), limits.rps, limits.burst, f"{ct}/{ft}")

    def take_route(self, route_id: str, path: str, limits: RouteLimits) -> None:
        """Spend one call of an HTTP route's rate here (the route's bucket, not its function's)."""
        if limits.rps is not UNSET:
            self._spend(("route", route_id), limits.rps, limits.burst, f"the route {path}")

    def _spend(
        self, key: tuple[str, str], rate: float, given_burst: int | UnsetType, what: str
    ) -> None:
        share = 1 / self.apis
        rps = rate * share
        burst = max(1.0, (given_burst if given_burst is not UNSET else rate) * share)
        now = time.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(burst, now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rps)
        bucket.updated = now
        if bucket.tokens < 1:
            wait_s = min(_MAX_WAIT_S, math.ceil((1 - bucket.tokens) / rps))
            raise RateLimited(
                f"{what} is limited to {rate:g} invocations a second; retry in {wait_s} s",
                retry_after_s=wait_s,
            )
        bucket.tokens -= 1
