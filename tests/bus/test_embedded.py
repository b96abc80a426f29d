from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from bus.connect import connect, redact
from bus.embedded import (
    CONFIG_FILE,
    CREDENTIALS_FILE,
    EmbeddedNats,
    NatsServerFailed,
    nats_server_binary,
    start_embedded_nats,
)
from bus.nats_users import AUTH_TIMEOUT_S, ROLES


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_pub_sub_and_jetstream(nats_server: EmbeddedNats, nc: Client) -> None:
    assert nats_server.url.startswith(f"nats://{nats_server.user}:")
    assert nats_server.url.endswith(f"@127.0.0.1:{nats_server.port}")
    assert _mode(nats_server.data_dir / CREDENTIALS_FILE) == 0o600
    assert _mode(nats_server.data_dir / CONFIG_FILE) == 0o600

    sub = await nc.subscribe("test.embedded.ping")
    await nc.publish("test.embedded.ping", b"hello")
    msg = await sub.next_msg(timeout=2)
    assert msg.data == b"hello"
    await sub.unsubscribe()

    js = nc.jetstream()
    await js.add_stream(name="TEST_EMBEDDED", subjects=["test.embedded.js.>"])
    ack = await js.publish("test.embedded.js.one", b"stored")
    stored = await js.get_msg("TEST_EMBEDDED", ack.seq)
    assert stored.data == b"stored"
    await js.delete_stream("TEST_EMBEDDED")


async def test_eight_mib_payload(nats_server: EmbeddedNats, nc: Client) -> None:
    assert nc.max_payload == 8 * 1024 * 1024
    sub = await nc.subscribe("test.embedded.big")
    body = os.urandom(8 * 1024 * 1024 - 1024)  # headroom for the protocol line
    await nc.publish("test.embedded.big", body)
    assert (await sub.next_msg(timeout=5)).data == body
    await sub.unsubscribe()


async def test_client_without_credentials_is_refused(nats_server: EmbeddedNats) -> None:
    """Without an API no one answers the auth callout: the server gives up after its auth
    timeout (with an API, the callout refuses at once: test_access)."""

    async def quiet(_: Exception) -> None:
        pass

    anonymous = f"nats://127.0.0.1:{nats_server.port}"
    try:
        nc = await nats.connect(
            anonymous,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            connect_timeout=AUTH_TIMEOUT_S + 2,
            error_cb=quiet,
        )
    except nats.errors.Error as exc:
        assert "authorization" in str(exc).lower()
    else:
        assert not nc.is_connected
        await nc.close()


async def test_connect_gives_up_on_bad_password(nats_server: EmbeddedNats) -> None:
    bad = f"nats://{nats_server.user}:wrong@127.0.0.1:{nats_server.port}"
    with pytest.raises(ConnectionError, match="Authorization Violation") as info:
        await connect(bad, name="bad-password", first_connect_timeout=1)
    assert "wrong" not in str(info.value)


def test_redact() -> None:
    assert redact("nats://u:s3cret@127.0.0.1:4222") == "nats://u:***@127.0.0.1:4222"
    assert redact("nats://tok@127.0.0.1:4222") == "nats://***@127.0.0.1:4222"
    assert redact("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"


async def test_stop_leaves_no_process(tmp_path: Path) -> None:
    server = await start_embedded_nats(tmp_path)
    await server.stop()
    assert server.process.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.kill(server.process.pid, 0)
    await server.stop()  # idempotent


async def test_restart_keeps_data_and_credentials(tmp_path: Path) -> None:
    first = await start_embedded_nats(tmp_path)
    try:
        client = await connect(first.url, name="before-restart")
        js = client.jetstream()
        await js.add_stream(name="SURVIVES", subjects=["test.survives"])
        await js.publish("test.survives", b"kept")
        await client.drain()
    finally:
        await first.stop()

    second = await start_embedded_nats(tmp_path, port=first.port)
    try:
        assert (second.port, second.url, second.urls) == (first.port, first.url, first.urls)
        credentials = json.loads((tmp_path / CREDENTIALS_FILE).read_text())
        assert credentials["users"][first.user] == first.password
        assert set(credentials["users"]) == set(ROLES)
        client = await connect(second.url, name="after-restart")
        msg = await client.jetstream().get_last_msg("SURVIVES", "test.survives")
        assert msg.data == b"kept"
        await client.drain()
    finally:
        await second.stop()


async def test_a_credentials_file_of_one_user_gains_the_role_users(tmp_path: Path) -> None:
    (tmp_path / CREDENTIALS_FILE).write_text('{"user": "computebus", "password": "old"}\n')
    server = await start_embedded_nats(tmp_path)
    try:
        client = await connect(server.urls["client"], name="after-upgrade")
        await client.drain()
        kept = json.loads((tmp_path / CREDENTIALS_FILE).read_text())["users"]
        assert set(kept) == set(ROLES)
        assert _mode(tmp_path / CREDENTIALS_FILE) == 0o600
    finally:
        await server.stop()


async def test_busy_port_fails_clearly(nats_server: EmbeddedNats, tmp_path: Path) -> None:
    with pytest.raises(NatsServerFailed, match="exited with code") as info:
        await asyncio.wait_for(start_embedded_nats(tmp_path, port=nats_server.port), 15)
    assert "address already in use" in str(info.value)


async def test_data_dir_in_use_fails_clearly(nats_server: EmbeddedNats) -> None:
    with pytest.raises(NatsServerFailed, match="already in use"):
        await start_embedded_nats(nats_server.data_dir)


async def test_per_message_ttl(nc: Client) -> None:
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="TEST_TTL", subjects=["test.ttl.>"], allow_msg_ttl=True))
    try:
        ack = await js.publish("test.ttl.one", b"fleeting", msg_ttl=1)
        assert (await js.get_msg("TEST_TTL", ack.seq)).data == b"fleeting"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while True:
            try:
                await js.get_msg("TEST_TTL", ack.seq)
            except NotFoundError:
                break
            assert loop.time() < deadline, "message outlived its 1 s TTL"
            await asyncio.sleep(0.1)
    finally:
        await js.delete_stream("TEST_TTL")


async def test_a_store_of_before_the_accounts_keeps_its_data(tmp_path: Path) -> None:
    """A data dir written when everything lived in nats-server's global account: its streams
    and buckets move to the computebus account, where the roles now find them."""
    data_dir = tmp_path / "nats"
    data_dir.mkdir()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    old = await asyncio.create_subprocess_exec(
        str(nats_server_binary()),
        "-js",
        "-sd",
        str(data_dir),
        "-a",
        "127.0.0.1",
        "-p",
        str(port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        nc = await connect(f"nats://127.0.0.1:{port}", name="old", first_connect_timeout=5)
        kv = await nc.jetstream().create_key_value(bucket="kept")
        await kv.put("k", b"v")
        await nc.close()
    finally:
        old.terminate()
        await old.wait()
    assert (data_dir / "jetstream" / "$G").is_dir()
    server = await start_embedded_nats(data_dir)
    try:
        nc = await connect(server.url, name="new")
        assert (await (await nc.jetstream().key_value("kept")).get("k")).value == b"v"
        await nc.close()
    finally:
        await server.stop()
    assert not (data_dir / "jetstream" / "$G").exists()
