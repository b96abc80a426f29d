"""One stream per collection for what grows with traffic (monitor records, dead letters), so a
collection's budget (``max_bytes``, oldest dropped first) is spent only by its own functions.

A collection's stream is made on its first write from this process; reads of a collection that
has none find nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from bus.streams import ensure_stream
from schemas.errors import StorageFull

log = logging.getLogger("computebus.bus")
_INSUFFICIENT_RESOURCES = 10047  # JetStream: the stream's max_bytes cannot be reserved


class CollectionStreams:
    """The streams of one kind (records or dead letters), one per collection, made on first use."""

    def __init__(
        self,
        js: JetStreamContext,
        config_for: Callable[[str], StreamConfig],
        *,
        replicas: int = 1,
    ) -> None:
        self.js = js
        self._config_for = config_for
        self.replicas = replicas
        self._made: set[str] = set()

    async def ready(self, ct: str, *, make: bool = True) -> bool:
        """Make sure the collection's stream exists (once per process, unless ``forget``);
        with ``make=False`` only whether it does (a collection that never had a function gets
        no stream, and so no share of the disk).

        Raises ``StorageFull`` when the server cannot reserve its ``max_bytes``: every
        collection's budget is set aside on the server's disk when its stream is made."""
        if ct in self._made:
            return True
        config = self.config_for(ct)
        if not make:
            assert config.name is not None
            try:
                await self.js.stream_info(config.name)
            except nats.js.errors.NotFoundError:
                return False
            self._made.add(ct)
            return True
        try:
            await ensure_stream(self.js, config)
        except nats.js.errors.APIError as exc:
            if exc.err_code != _INSUFFICIENT_RESOURCES:
                raise
            raise StorageFull(
                f"the bus cannot set aside {config.max_bytes} bytes for collection {ct!r} "
                f"({config.name}): the collections' budgets (COMPUTEBUS_MONITOR_MAX_BYTES and "
                "COMPUTEBUS_DEAD_LETTER_MAX_BYTES each) already take what JetStream may store; "
                "lower them or give the bus more disk"
            ) from None
        self._made.add(ct)
        return True

    def config_for(self, ct: str) -> StreamConfig:
        return replace(self._config_for(ct), num_replicas=self.replicas)

    def forget(self, ct: str) -> None:
        """The stream was not there after all (removed by an operator): make it again."""
        self._made.discard(ct)


async def drop_shared_stream(js: JetStreamContext, name: str) -> None:
    """Remove a stream of the layout before per-collection streams: its subjects overlap theirs."""
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await js.delete_stream(name)
        log.warning("removed the shared stream %s (now one stream per collection)", name)
