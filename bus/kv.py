"""Two things every KV bucket of ours needs: opening it (made on first use), and following it
with a watch that delivers every entry, first what is there, then each change."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from bus.streams import ensure_replicas

log = logging.getLogger("computebus.bus")

# (key, value or None when deleted, the entry's sequence)
OnEntry = Callable[[str, bytes | None, int], None]


async def open_bucket(
    js: JetStreamContext, bucket: str, *, history: int = 1, replicas: int | None = None
) -> KeyValue:
    """The bucket, made (file storage) if it is not there yet; with ``replicas``, also brought
    to that many copies if it has another count (None: as it is, or 1 when made here)."""
    try:
        kv = await js.key_value(bucket)
    except nats.js.errors.BucketNotFoundError:
        config = KeyValueConfig(
            bucket=bucket, history=history, storage=StorageType.FILE, replicas=replicas or 1
        )
        return await js.create_key_value(config)
    if replicas is not None:
        await ensure_replicas(js, f"KV_{bucket}", replicas)
    return kv


class KvFollower:
    """A watch on a whole bucket feeding ``on_entry``; ``start`` returns once what the bucket
    held has been delivered."""

    def __init__(self, kv: KeyValue, bucket: str, on_entry: OnEntry) -> None:
        self.kv = kv
        self.bucket = bucket
        self.on_entry = on_entry
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        watcher = await self.kv.watchall()
        caught_up = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._follow(watcher, caught_up))
        await caught_up

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _follow(self, watcher: KeyValue.KeyWatcher, caught_up: asyncio.Future[None]) -> None:
        try:
            async for entry in watcher:
                if entry is None:  # the end of what was there
                    if not caught_up.done():
                        caught_up.set_result(None)
                    continue
                deleted = entry.operation in (KV_DEL, KV_PURGE) or not entry.value
                try:
                    self.on_entry(entry.key, None if deleted else entry.value, entry.revision or 0)
                except Exception:
                    log.exception("ignoring unreadable entry %s of %s", entry.key, self.bucket)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]
