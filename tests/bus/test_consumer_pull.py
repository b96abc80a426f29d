"""Pulls on a durable consumer against the real nats-server: a pull ends when its batch came or
its wait ran out, a waiting pull takes what is published meanwhile, and a pull on a consumer
that is gone fails instead of hanging."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig

from bus.consumer_pull import ConsumerPull, PullFailed


async def work_queue(nc: Client) -> tuple[str, str]:
    name = f"PULL_{uuid.uuid4().hex[:8]}"
    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(name=name, subjects=[f"{name}.>"], retention=RetentionPolicy.WORK_QUEUE)
    )
    await js.add_consumer(name, ConsumerConfig(durable_name="w", ack_policy=AckPolicy.EXPLICIT))
    return name, "w"


async def test_a_pull_ends_when_its_batch_came_or_its_wait_ran_out(nc: Client) -> None:
    stream, durable = await work_queue(nc)
    js = nc.jetstream()
    for n in range(3):
        await js.publish(f"{stream}.a", str(n).encode())
    got: list[Msg] = []
    pull = ConsumerPull(nc, stream, durable, got.append)
    await pull.open(100)
    try:
        assert await pull.pull(2, wait_s=5) == 2  # ends at once: the batch came
        assert await pull.pull(5, wait_s=0.3) == 1  # the one left, then the wait ran out
        assert await pull.pull(5, wait_s=0.2) == 0
        assert [m.data for m in got] == [b"0", b"1", b"2"]
        for msg in got:
            await msg.ack_sync()
        assert (await js.stream_info(stream)).state.messages == 0
    finally:
        await pull.close()
        await js.delete_stream(stream)


async def test_a_pull_waits_for_a_message_published_while_it_waits(nc: Client) -> None:
    stream, durable = await work_queue(nc)
    js = nc.jetstream()
    got: list[Msg] = []
    pull = ConsumerPull(nc, stream, durable, got.append)
    await pull.open(100)
    try:
        request = asyncio.create_task(pull.pull(1, wait_s=5))
        await asyncio.sleep(0.1)
        assert not request.done()
        await js.publish(f"{stream}.a", b"late")
        assert await asyncio.wait_for(request, 2) == 1
        assert [m.data for m in got] == [b"late"]
    finally:
        await pull.close()
        await js.delete_stream(stream)


async def test_a_pull_on_a_consumer_that_is_gone_fails(nc: Client) -> None:
    stream, durable = await work_queue(nc)
    js = nc.jetstream()
    await js.delete_consumer(stream, durable)
    pull = ConsumerPull(nc, stream, durable, lambda msg: None)
    await pull.open(100)
    try:
        with pytest.raises(PullFailed):
            await pull.pull(1, wait_s=0.2)
    finally:
        await pull.close()
        await js.delete_stream(stream)
