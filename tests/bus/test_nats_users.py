"""The embedded server's users against a real nats-server of their own: the client user calls
functions and hears their results but cannot touch computebus's internals or steal invocations;
the worker cannot change functions; the API cannot take invocations but hears their results."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import KeyValueConfig, StreamConfig

from bus import subjects
from bus.embedded import EmbeddedNats, start_embedded_nats

FN = "ms.compute.team.function.123456789"


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    started = await start_embedded_nats(tmp_path / "nats")
    try:
        yield started
    finally:
        await started.stop()


class Seen:
    def __init__(self) -> None:
        self.errors: list[str] = []

    async def on_error(self, exc: Exception) -> None:
        self.errors.append(str(exc).lower())

    async def violation(self, what: str) -> None:
        for _ in range(40):
            if any("permissions violation" in e and what.lower() in e for e in self.errors):
                return
            await asyncio.sleep(0.05)
        pytest.fail(f"no permissions violation for {what}: {self.errors}")


async def as_role(server: EmbeddedNats, role: str, seen: Seen) -> Client:
    return await nats.connect(server.urls[role], error_cb=seen.on_error, allow_reconnect=False)


async def test_the_client_calls_functions_and_hears_results(server: EmbeddedNats) -> None:
    operator = await nats.connect(server.url)
    seen = Seen()
    client = await as_role(server, "client", seen)
    try:

        async def answer(msg: Msg) -> None:
            await msg.respond(b'{"ok":true}')

        await operator.subscribe(FN, queue=subjects.WORKER_QUEUE, cb=answer)
        await operator.jetstream().add_stream(
            StreamConfig(name=subjects.ASYNC_STREAM, subjects=[subjects.ASYNC_WILDCARD])
        )
        results = await client.subscribe(f"{FN}.result.>")
        app = await client.subscribe("orders.created")
        await client.flush()
        assert (await client.request(FN, b"{}", timeout=5)).data == b'{"ok":true}'
        ack = await client.jetstream().publish(f"{FN}.async", b"{}", headers={"Nats-Msg-Id": "j1"})
        assert ack.stream == subjects.ASYNC_STREAM and not ack.duplicate
        await operator.publish(f"{FN}.result.succeeded", b"r")
        assert (await results.next_msg(timeout=5)).data == b"r"
        await client.publish("orders.created", b"o")  # the application's own subjects
        assert (await app.next_msg(timeout=5)).data == b"o"
        await client.publish("$SRV.PING", b"")  # NATS micro discovery
        await client.flush()
        await asyncio.sleep(0.2)
        assert seen.errors == []
    finally:
        await client.close()
        await operator.close()


async def test_the_client_cannot_touch_computebus_internals(server: EmbeddedNats) -> None:
    operator = await nats.connect(server.url)
    await operator.jetstream().create_key_value(KeyValueConfig(bucket=subjects.FUNCTIONS_BUCKET))
    await operator.jetstream().add_stream(
        StreamConfig(name="COMPUTEBUS_MONITOR_team", subjects=["computebus.monitor.team.>"])
    )
    seen = Seen()
    client = await as_role(server, "client", seen)
    try:
        js = client.jetstream(timeout=1)
        with pytest.raises(Exception):  # noqa: B017 - refused, whichever way nats-py says so
            await js.delete_key_value(subjects.FUNCTIONS_BUCKET)
        await seen.violation("$js.api.stream.delete")
        with pytest.raises(Exception):  # noqa: B017
            await js.stream_info("COMPUTEBUS_MONITOR_team")
        await client.publish(f"$KV.{subjects.FUNCTIONS_BUCKET}.fn.team.123456789", b"{}")
        await seen.violation(f"$kv.{subjects.FUNCTIONS_BUCKET}")
        await client.publish(subjects.WORKER_SYNC, b"{}")
        await seen.violation(subjects.WORKER_SYNC)
        await client.publish(f"{FN}.event.created", b"{}")
        await seen.violation(f"{FN}.event.created")
        await client.subscribe(FN, queue=subjects.WORKER_QUEUE)
        await seen.violation(f'subscription to "{FN}"')
        await client.subscribe("_CB_INBOX.>")
        await seen.violation("_cb_inbox")
        # A wildcard subscription is taken but never carries an invocation.
        everything = await client.subscribe("ms.compute.>")
        await client.flush()
        await operator.publish(FN, b"stolen?")
        await operator.publish(f"{FN}.result.failed", b"fine")
        assert (await everything.next_msg(timeout=5)).subject == f"{FN}.result.failed"
        assert (await operator.jetstream().stream_info(f"KV_{subjects.FUNCTIONS_BUCKET}")).config
    finally:
        await client.close()
        await operator.close()


async def test_the_worker_cannot_change_functions_and_the_api_cannot_take_invocations(
    server: EmbeddedNats,
) -> None:
    operator = await nats.connect(server.url)
    kv = await operator.jetstream().create_key_value(
        KeyValueConfig(bucket=subjects.FUNCTIONS_BUCKET)
    )
    await operator.jetstream().create_key_value(KeyValueConfig(bucket=subjects.TOKENS_BUCKET))
    seen_worker, seen_api = Seen(), Seen()
    worker = await as_role(server, "worker", seen_worker)
    api = await as_role(server, "api", seen_api)
    try:
        with pytest.raises(Exception):  # noqa: B017
            await (await worker.jetstream(timeout=1).key_value(subjects.FUNCTIONS_BUCKET)).put(
                "fn.team.123456789", b"{}"
            )
        await seen_worker.violation(f"$kv.{subjects.FUNCTIONS_BUCKET}")
        with pytest.raises(Exception):  # noqa: B017
            await worker.jetstream(timeout=1).key_value(subjects.TOKENS_BUCKET)
        await seen_worker.violation(f"kv_{subjects.TOKENS_BUCKET}")
        assert (await kv.status()).values == 0
        await api.subscribe(FN, queue=subjects.WORKER_QUEUE)
        await seen_api.violation(f'subscription to "{FN}"')
    finally:
        await worker.close()
        await api.close()
        await operator.close()


async def test_the_api_hears_a_functions_results_and_deletion(server: EmbeddedNats) -> None:
    operator = await nats.connect(server.url)
    seen = Seen()
    api = await as_role(server, "api", seen)
    try:
        results = await api.subscribe(f"{FN}.result.*")
        deleted = await api.subscribe(f"{FN}.event.deleted")
        await api.flush()
        await operator.publish(f"{FN}.result.failed", b"r")
        await operator.publish(f"{FN}.event.deleted", b"d")
        assert (await results.next_msg(timeout=5)).data == b"r"
        assert (await deleted.next_msg(timeout=5)).data == b"d"
        assert seen.errors == []
    finally:
        await api.close()
        await operator.close()
