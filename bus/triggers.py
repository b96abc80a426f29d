"""The triggers bucket, and a copy of it fed by a KV watch on every API process, so that every API
serves the same HTTP routes and a request to one never waits on the bus for its lookup.

Keys are in ``bus.subjects``: each trigger under its function (so a function's triggers are one
key filter), and for an HTTP route a claim on its method and path, made with KV create, so two
APIs creating the same route at once cannot both win.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from bus import subjects
from bus.kv import KvFollower, open_bucket
from schemas.codec import decoder_for, encode
from schemas.errors import Conflict, detail
from schemas.triggers import TRIGGER, HttpTrigger, Trigger

log = logging.getLogger("computebus.triggers")


def _key(trigger: Trigger) -> str:
    return subjects.trigger_key(
        trigger.function.collection_topic, trigger.function.service, trigger.id
    )


def route_claim(method: str, path: str) -> str:
    return subjects.route_claim_key(method, hashlib.sha256(path.encode()).hexdigest()[:40])


class TriggerStore:
    """Triggers by id in a KV bucket, and the watch-fed copy reads and routing use."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        self._triggers: dict[str, tuple[int, Trigger]] = {}  # id -> (KV sequence, trigger)
        self._follower = KvFollower(kv, subjects.TRIGGERS_BUCKET, self._apply)
        self.on_change: list[Callable[[str, Trigger | None], None]] = []  # (id, None: gone)

    @classmethod
    async def open(cls, js: JetStreamContext, *, replicas: int | None = None) -> TriggerStore:
        return cls(await open_bucket(js, subjects.TRIGGERS_BUCKET, replicas=replicas))

    async def start(self) -> None:
        """Returns once what the bucket holds is in the copy."""
        await self._follower.start()

    async def close(self) -> None:
        await self._follower.close()

    def _apply(self, key: str, value: bytes | None, seq: int) -> None:
        parts = key.split(".")
        if parts[0] != "trg" or len(parts) != 4:
            return
        trigger_id = parts[3]
        if value is None:
            self._forget(trigger_id)
        else:
            self._remember(trigger_id, seq, decoder_for(TRIGGER).decode(value))

    def _remember(self, trigger_id: str, seq: int, trigger: Trigger) -> None:
        known = self._triggers.get(trigger_id)
        if known is None or known[0] < seq:
            self._triggers[trigger_id] = (seq, trigger)
            for callback in self.on_change:
                callback(trigger_id, trigger)

    def _forget(self, trigger_id: str) -> None:
        if self._triggers.pop(trigger_id, None) is not None:
            for callback in self.on_change:
                callback(trigger_id, None)

    # ---- reads (the copy) ---------------------------------------------------------------------

    def get(self, trigger_id: str) -> Trigger | None:
        known = self._triggers.get(trigger_id)
        return known[1] if known is not None else None

    def all(self) -> list[Trigger]:
        return sorted((t for _, t in self._triggers.values()), key=lambda t: (t.created, t.id))

    def of_function(self, ct: str, ft: str) -> list[Trigger]:
        return [
            t for t in self.all() if (t.function.collection_topic, t.function.service) == (ct, ft)
        ]

    # ---- writes -------------------------------------------------------------------------------

    async def create(self, trigger: Trigger) -> None:
        """Store a new trigger; an HTTP route first claims its method and path (409 if taken)."""
        key = _key(trigger)
        if isinstance(trigger, HttpTrigger):
            try:
                await self.kv.create(route_claim(trigger.method, trigger.path), key.encode())
            except nats.js.errors.KeyWrongLastSequenceError:
                reason = f"{trigger.method} {trigger.path} is already routed"
                raise Conflict(f"an HTTP route {reason}", [detail("/path", reason)]) from None
        try:
            seq = await self.kv.create(key, encode(trigger))
        except BaseException:
            await self._release(trigger)
            raise
        self._remember(trigger.id, seq, trigger)  # our own reads see our write at once

    async def update(self, trigger: Trigger) -> None:
        seq = await self.kv.put(_key(trigger), encode(trigger))
        self._remember(trigger.id, seq, trigger)

    async def delete(self, trigger: Trigger) -> None:
        await self.kv.purge(_key(trigger))
        await self._release(trigger)
        self._forget(trigger.id)

    async def delete_of_function(self, ct: str, ft: str) -> list[Trigger]:
        """Delete every trigger of a function (it is being deleted); returns them."""
        gone = self.of_function(ct, ft)
        for trigger in gone:
            with contextlib.suppress(nats.js.errors.Error):
                await self.delete(trigger)
        return gone

    async def claimed_by(self, method: str, path: str) -> tuple[str, str] | None:
        """The function whose trigger holds a route's claim, or None when it is free."""
        try:
            entry = await self.kv.get(route_claim(method, path))
        except nats.js.errors.KeyNotFoundError:
            return None
        parts = (entry.value or b"").decode().split(".")
        return (parts[1], parts[2]) if len(parts) == 4 else None

    async def release_claim(self, method: str, path: str) -> None:
        """Free a route's claim (its trigger's function is gone: a trigger made while its
        function was being deleted), with the trigger it names."""
        claim = route_claim(method, path)
        with contextlib.suppress(nats.js.errors.Error):
            entry = await self.kv.get(claim)
            if entry.value:
                await self.kv.purge(entry.value.decode())
            await self.kv.purge(claim)

    async def _release(self, trigger: Trigger) -> None:
        if isinstance(trigger, HttpTrigger):
            with contextlib.suppress(nats.js.errors.Error):
                await self.kv.purge(route_claim(trigger.method, trigger.path))
