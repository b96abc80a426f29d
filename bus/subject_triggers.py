"""Subject triggers as JetStream streams: the server moves every message, we relay none.

Each trigger has a stream that captures its source subject (as published in the APP account,
which the COMPUTEBUS account imports under ``computebus.app.``, and as published inside the
COMPUTEBUS account itself, for a single-account server given with ``--nats-url``). The Async
stream sources that stream, rewritten to the function's ``.async`` subject, so each message is
an Async invocation like any other, with the function's retries and dead letters, exactly once
however many APIs and workers run. The server stamps each sourced copy with
``Nats-Stream-Source: <stream> <seq> <filters> <dests> <subject published on>``: the trigger,
its alias (both in the stream's name), the message's sequence in the trigger's stream (its
invocation id's key) and the subject the worker tells the handler.

A disabled trigger keeps its stream (its subject stays taken) but is not sourced; enabling it
purges what the stream caught meanwhile and sources it again, so messages published while it
was disabled are dropped. Sequences go on across a purge, so no invocation id comes twice.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamSource,
    SubjectTransform,
)

from bus import subjects
from bus.caller_seal import CallerSeal
from schemas.errors import Conflict, detail
from schemas.headers import H_ALIAS, H_STREAM_SOURCE
from schemas.invocations import TriggerContext
from schemas.triggers import MAX_SOURCE_TOKENS, SubjectTrigger

# What a trigger's stream keeps once the Async stream has its copy: only a buffer for when the
# Async stream cannot take it yet (full, or electing a leader).
KEPT_S = 24 * 3600.0
_SUBJECT_OVERLAP = 10065  # JSStreamSubjectOverlapErr
_OURS = ("compute-",)


@dataclass(frozen=True)
class Origin:
    """Where an Async message a subject trigger made came from."""

    trigger_id: str
    alias: str
    seq: int  # in the trigger's stream
    subject: str  # as published


def origin_of(headers: dict[str, str]) -> Origin | None:
    """The trigger a message came through, from the header the server stamps on (a client
    cannot publish one: the server refuses it on anything but a sourced copy)."""
    fields = headers.get(H_STREAM_SOURCE, "").split(" ")
    if len(fields) < 5 or not fields[1].isdigit():
        return None
    where = subjects.parse_trigger_stream(fields[0])
    if where is None:
        return None
    return Origin(where[0], where[1], int(fields[1]), subjects.from_app_subject(fields[4]))


def trigger_invocation_id(seal: CallerSeal, origin: Origin) -> str:
    """The same for every delivery of one message, keyed so no client can take it first."""
    return seal.keyed_id("subject-trigger", origin.trigger_id, str(origin.seq))


def trigger_headers(headers: dict[str, str], alias: str) -> dict[str, str]:
    """The headers a trigger's message runs with: the publisher's, but no ``Compute-*`` option
    of its own (the trigger says which alias runs; the rest are computebus's to set)."""
    kept = {k: v for k, v in headers.items() if not k.lower().startswith(_OURS)}
    kept[H_ALIAS] = alias
    return kept


def trigger_context(origin: Origin, headers: dict[str, str]) -> TriggerContext:
    """What the handler's ``context.trigger`` says; the message's own headers only."""
    own = {k: v for k, v in headers.items() if not k.lower().startswith((*_OURS, "nats-"))}
    return TriggerContext(id=origin.trigger_id, subject=origin.subject, headers=own)


def transform_filters(source: str) -> list[str]:
    """The filters of the Async stream's transforms for ``source``, as published in APP and in
    COMPUTEBUS. The server refuses a ``>`` filter onto a subject without one, so ``a.>`` is
    spelt as each of ``a.*`` .. ``a.*.*.*.*.*`` (no longer subject reaches us: nats_users)."""
    head, _, last = source.rpartition(".")
    if last != ">":
        bare = [source]
    else:
        stem = f"{head}." if head else ""
        start = source.count(".") + 1
        bare = [stem + ".".join("*" * n) for n in range(1, MAX_SOURCE_TOKENS - start + 2)]
    return [*bare, *(subjects.app_subject(s) for s in bare)]


class TriggerStreams:
    """Make, source, unsource and remove a subject trigger's stream."""

    def __init__(self, js: JetStreamContext, *, replicas: int = 1) -> None:
        self.js = js
        self.replicas = replicas

    async def create(self, trigger: SubjectTrigger) -> None:
        """Its stream; a 409 naming /source when the server finds the subject taken by another
        stream (another trigger's, or one of computebus's own)."""
        config = StreamConfig(
            name=subjects.trigger_stream(trigger.id, trigger.alias),
            subjects=[trigger.source, subjects.app_subject(trigger.source)],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_age=KEPT_S,
            num_replicas=self.replicas,
        )
        try:
            await self.js.add_stream(config)
        except nats.js.errors.APIError as exc:
            if exc.err_code != _SUBJECT_OVERLAP:
                raise
            reason = f"{trigger.source} overlaps a subject another stream captures"
            raise Conflict(f"/source: {reason}", [detail("/source", reason)]) from None

    async def purge(self, trigger: SubjectTrigger) -> None:
        """Drop what it caught while disabled (before it is sourced again)."""
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await self.js.purge_stream(subjects.trigger_stream(trigger.id, trigger.alias))

    async def delete(self, trigger: SubjectTrigger) -> None:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await self.js.delete_stream(subjects.trigger_stream(trigger.id, trigger.alias))

    async def source(self, enabled: list[SubjectTrigger]) -> None:
        """Make the Async stream source exactly the streams of ``enabled`` (every trigger that
        is on), leaving its other sources be. Each API runs this from its copy of the triggers
        after each change it makes or hears of, so a write from a stale copy is mended by the
        next one; a source taken off and put back resumes where it was (its copies' ids are
        the same, so one delivered again is recorded once)."""
        info = await self.js.stream_info(subjects.ASYNC_STREAM)
        found = list(info.config.sources or [])
        wanted = [s for s in found if subjects.parse_trigger_stream(s.name or "") is None]
        wanted += [_source_of(t) for t in sorted(enabled, key=lambda t: t.id)]
        if _names(wanted) != _names(found):
            await self.js.update_stream(replace(info.config, sources=wanted))


def _source_of(trigger: SubjectTrigger) -> StreamSource:
    ct, ft = trigger.function.collection_topic, trigger.function.service
    return StreamSource(
        name=subjects.trigger_stream(trigger.id, trigger.alias),
        # Without a start, a source new to a stream that has held messages starts from the
        # time of its last one: a message published while the source sets up would be missed.
        opt_start_seq=1,
        subject_transforms=[
            SubjectTransform(src=s, dest=subjects.async_subject(ct, ft))
            for s in transform_filters(trigger.source)
        ],
    )


def _names(sources: list[StreamSource]) -> list[str]:
    return sorted(s.name or "" for s in sources)


def trigger_sources(config: StreamConfig) -> list[StreamSource]:
    """The trigger streams an Async stream's config sources (kept when it is brought up to
    date at start-up: bus/async_queue.py)."""
    return [
        s for s in config.sources or [] if subjects.parse_trigger_stream(s.name or "") is not None
    ]
