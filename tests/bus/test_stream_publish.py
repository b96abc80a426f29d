"""Stream publishes with their acks: the stored sequence, JetStream's refusals as the same
errors nats-py raises, and a wait for what is still unconfirmed."""

from __future__ import annotations

import asyncio
import uuid

import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.js.api import StreamConfig

from bus.stream_publish import StreamPublisher


async def test_each_publish_gets_its_sequence_and_a_refusal_its_error(nc: Client) -> None:
    name = f"PUB_{uuid.uuid4().hex[:8]}"
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=name, subjects=[f"{name}.>"], max_msgs_per_subject=1))
    try:
        publisher = StreamPublisher(nc)
        acks = [await publisher.publish(f"{name}.{i}", b"x") for i in range(50)]
        seqs = await asyncio.gather(*acks)
        assert seqs == list(range(1, 51))
        await publisher.wait_idle()

        expect = {"Nats-Expected-Last-Subject-Sequence": "999"}
        refused = await publisher.publish(f"{name}.0", b"y", expect)
        with pytest.raises(nats.js.errors.APIError) as caught:
            await refused
        assert caught.value.err_code == 10071  # wrong last sequence

        nowhere = await publisher.publish(f"NOSTREAM_{name}.x", b"z")
        with pytest.raises(nats.js.errors.NoStreamResponseError):
            await nowhere
        assert (await js.get_last_msg(name, f"{name}.0")).data == b"x"
    finally:
        await js.delete_stream(name)


async def test_at_most_max_pending_wait_for_their_ack(nc: Client) -> None:
    name = f"PUB_{uuid.uuid4().hex[:8]}"
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=name, subjects=[f"{name}.>"]))
    try:
        publisher = StreamPublisher(nc, max_pending=3)
        acks, most = [], 0
        for _ in range(10):  # nothing reads an ack between two publishes unless one waits
            acks.append(await publisher.publish(f"{name}.a", b"x"))
            most = max(most, len(publisher._pending))
        assert most == 3
        assert sorted(await asyncio.gather(*acks)) == list(range(1, 11))
    finally:
        await js.delete_stream(name)
