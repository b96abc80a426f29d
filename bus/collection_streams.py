"""One stream per collection for what grows with traffic (monitor records, dead letters), so a
collection's budget (``max_bytes``, oldest dropped first) is spent only by its own functions.

A collection's stream is made on its first write from this process; reads of a collection that
has none find nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from bus.streams import ensure_stream

log = logging.getLogger("computebus.bus")


class CollectionStreams:
    def __init__(self, js: JetStreamContext, config_for: Callable[[str], StreamConfig]) -> None:
        self.js = js
        self.config_for = config_for
        self._made: set[str] = set()

    async def ready(self, ct: str) -> None:
        """Make sure the collection's stream exists (once per process, unless ``forget``)."""
        if ct not in self._made:
            await ensure_stream(self.js, self.config_for(ct))
            self._made.add(ct)

    def forget(self, ct: str) -> None:
        """The stream was not there after all (removed by an operator): make it again."""
        self._made.discard(ct)


async def drop_shared_stream(js: JetStreamContext, name: str) -> None:
    """Remove a stream of the layout before per-collection streams: its subjects overlap theirs."""
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await js.delete_stream(name)
        log.warning("removed the shared stream %s (now one stream per collection)", name)
