"""The control-plane messages: what one version writes another reads, unknown fields and all
(an API and a worker of different versions meet during a rolling upgrade)."""

from __future__ import annotations

import msgspec
import pytest

from schemas.codec import decoder_for, encode
from schemas.control import Blocker, ProbeReply, RegistrySync, WorkerInfo


def test_a_registry_sync_carries_the_record_bytes_as_written() -> None:
    record = b'{"name":"f","collection_topic":"c"}'
    sync = RegistrySync(collection_topic="c", service="f", seq=7, record=msgspec.Raw(record))
    back = decoder_for(RegistrySync).decode(encode(sync))
    assert (back.collection_topic, back.service, back.seq) == ("c", "f", 7)
    assert bytes(back.record) == record


def test_a_newer_worker_s_ping_answer_is_still_read() -> None:
    answer = b'{"worker":"w1","isolation":"bwrap+cgroup","runtimes":{"node":"v22"},"zone":"b"}'
    info = decoder_for(WorkerInfo).decode(answer)
    assert info.worker == "w1" and info.runtimes == {"node": "v22"} and info.isolation_gaps == []


def test_probe_replies_round_trip_and_a_broken_one_is_refused() -> None:
    reply = ProbeReply(blockers=[Blocker(reason="handler_not_found", message="no export")])
    assert decoder_for(ProbeReply).decode(encode(reply)) == reply
    with pytest.raises(msgspec.ValidationError, match="blockers"):
        decoder_for(ProbeReply).decode(b'{"blockers":[{"reason":1}]}')
