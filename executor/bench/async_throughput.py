"""``computebus bench --async``: sustained Async throughput beside a bare JetStream work queue.

Both sides get the same load: ``count`` messages published to a work-queue stream as fast as
the acks come back, consumed by one process through a durable pull consumer, each followed by a
result message. The bare side acks and answers at once; computebus runs each invocation in a
warm handler and writes its records. Throughput is counted from the first publish to the last
result, and printed as a ratio to the bare side measured in the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig

from bus.connect import connect
from bus.embedded import start_embedded_nats
from bus.workers import ping_workers
from executor.bench import BenchFailed
from executor.bench.invoke import child, create_noop, stack_child

BARE_JS_WORKER = """
import asyncio, sys, nats, uvloop
async def main():
    nc = await nats.connect(sys.argv[1])
    js = nc.jetstream()
    sub = await js.pull_subscribe_bind("bench-workers", stream="BENCH")
    print("ready", flush=True)
    async def settle(msg):
        await msg.ack()
        await nc.publish("bench.done", msg.data)
    while True:
        try:
            msgs = await sub.fetch(32, timeout=1)
        except nats.errors.TimeoutError:
            continue
        await asyncio.gather(*(settle(m) for m in msgs))
uvloop.run(main())
"""


async def _publish_and_count(
    nc: Client, subject: str, done_subject: str, count: int, timeout_s: float = 300
) -> float:
    """Publish ``count`` messages (each with its own Nats-Msg-Id) and return invocations per
    second until ``count`` messages arrived on ``done_subject``."""
    finished = asyncio.Event()
    seen = 0

    async def on_done(_: object) -> None:
        nonlocal seen
        seen += 1
        if seen >= count:
            finished.set()

    sub = await nc.subscribe(done_subject, cb=on_done)
    js = nc.jetstream(publish_async_max_pending=1024)
    started = time.perf_counter()
    for i in range(count):
        await js.publish_async(subject, b"null", headers={"Nats-Msg-Id": f"bench-{i}"})
    await js.publish_async_completed()
    await asyncio.wait_for(finished.wait(), timeout_s)
    elapsed = time.perf_counter() - started
    await sub.unsubscribe()
    return count / elapsed


@contextlib.asynccontextmanager
async def extra_workers(nats_url: str, n: int, tmp: Path) -> AsyncIterator[None]:
    """``n`` more ``computebus worker`` processes beside the one ``serve`` starts."""
    async with contextlib.AsyncExitStack() as stack:
        for i in range(n):
            env = {
                **os.environ,
                "NATS_URL": nats_url,
                "COMPUTEBUS_DATA_DIR": str(tmp / f"worker-{i}"),
                "COMPUTEBUS_LOG_LEVEL": "WARNING",
            }
            argv = (sys.executable, "-m", "executor.cli", "worker")
            await stack.enter_async_context(child(*argv, env=env, ready=b""))
        if n == 0:
            yield
            return
        nc = await connect(nats_url, name="computebus-bench")
        try:
            for _ in range(600):
                if len(await ping_workers(nc)) >= n + 1:
                    break
            else:
                raise BenchFailed("the extra workers did not start")
        finally:
            await nc.close()
        yield


async def run_async_bench(*, count: int, workers: int = 1, cluster: bool = False) -> int:
    with tempfile.TemporaryDirectory(prefix="computebus-bench-async-") as tmp:
        server = await start_embedded_nats(Path(tmp) / "bare-nats")
        try:
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            await js.add_stream(
                StreamConfig(
                    name="BENCH", subjects=["bench.async"], retention=RetentionPolicy.WORK_QUEUE
                )
            )
            await js.add_consumer(
                "BENCH",
                ConsumerConfig(durable_name="bench-workers", ack_policy=AckPolicy.EXPLICIT),
            )
            async with child(sys.executable, "-c", BARE_JS_WORKER, server.url, ready=b"ready"):
                bare = await _publish_and_count(nc, "bench.async", "bench.done", count)
            await nc.close()
        finally:
            await server.stop()

        async with (
            stack_child(Path(tmp) / "cb", workers if cluster else 0) as served,
            extra_workers(served.worker_nats, 0 if cluster else workers - 1, Path(tmp)),
        ):
            ct, ft = await create_noop(served)
            nc = await connect(served.nats, name="computebus-bench")
            subject = f"ms.compute.{ct}.function.{ft}"
            ours = await _publish_and_count(
                nc, f"{subject}.async", f"{subject}.result.succeeded", count
            )
            await nc.close()

    ratio = ours / bare
    print(f"{'bare jetstream work queue':<28} {bare:>9.0f} invocations/s")
    where = "3-node cluster" if cluster else "one server"
    print(f"{f'computebus async, {workers} worker(s), {where}':<28} {ours:>9.0f} invocations/s")
    print(f"async throughput vs bare jetstream: {ratio:.2f}x ({count} invocations each)")
    print(
        json.dumps(
            {
                "count": count,
                "workers": workers,
                "cluster": cluster,
                "bare_jetstream_per_s": round(bare, 1),
                "computebus_async_per_s": round(ours, 1),
                "async_throughput_ratio": round(ratio, 3),
            }
        )
    )
    return 0
