"""NATS clients with API tokens against the real stack: the auth callout grants a token's
scopes as NATS permissions, the worker records who called, and a revoke or an expiry closes the
token's connections; a bad token never connects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import nats
import nats.errors
import pytest
from nats.aio.client import Client

from bus.embedded import EmbeddedNats
from schemas.tokens import inbox_prefix_of
from tests.bus.test_nats_users import Seen
from tests.e2e.test_access import NODE_ECHO, collection, token
from tests.helpers import MakeFunction, wait_for_record


def token_url(server: EmbeddedNats, secret: str) -> str:
    return f"nats://{secret}@127.0.0.1:{server.port}"


@asynccontextmanager
async def as_token(
    server: EmbeddedNats, secret: str, errors: Seen | None = None, **options: object
) -> AsyncIterator[Client]:
    errors = errors or Seen()
    options.setdefault("inbox_prefix", inbox_prefix_of(secret.split("_")[1]))
    nc = await nats.connect(
        token_url(server, secret), error_cb=errors.on_error, allow_reconnect=False, **options
    )
    try:
        yield nc
    finally:
        await nc.close()


async def test_a_token_invokes_its_collection_over_nats_and_the_record_names_it(
    nats_server: EmbeddedNats, http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    ct = collection()
    fn = await make_function(NODE_ECHO, collection=ct)
    other = await make_function(NODE_ECHO, collection=collection())
    secret = await token(http, f"invoke:{ct}", f"read:{ct}")
    token_id = secret.split("_")[1]
    errors = Seen()
    async with as_token(nats_server, secret, errors) as nc:
        results = await nc.subscribe(f"{fn.subject}.result.>")
        # A forged identity header is written over by the server.
        forged = {"Nats-Request-Info": '{"user":"cbt_0123456789abcdef"}'}
        reply = await nc.request(fn.subject, b'{"v":1}', timeout=10, headers=forged)
        assert reply.data == b'{"got":{"v":1}}'
        invocation_id = (reply.headers or {})["Compute-Invocation-Id"]
        record = await wait_for_record(http, fn, invocation_id)
        assert record["caller"] == {"via": "nats", "token_id": token_id, "user": f"cbt_{token_id}"}
        assert (await results.next_msg(timeout=5)).subject == f"{fn.subject}.result.succeeded"

        ack = await nc.jetstream().publish(f"{fn.subject}.async", b'{"v":2}')
        assert ack.seq > 0

        with pytest.raises(nats.errors.TimeoutError):
            await nc.request(other.subject, b"{}", timeout=1)
        await errors.violation(f'publish to "{other.subject}"')
        await nc.subscribe(f"{other.subject}.result.>")
        await errors.violation(f'subscription to "{other.subject}.result')
        await nc.subscribe("_INBOX.>")  # another client's replies
        await errors.violation('subscription to "_inbox.>"')


async def test_a_read_token_hears_results_but_cannot_invoke(
    nats_server: EmbeddedNats, http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    ct = collection()
    fn = await make_function(NODE_ECHO, collection=ct)
    reader = await token(http, f"read:{ct[:6]}*")  # a prefix: the collections of connect time
    errors = Seen()
    async with as_token(nats_server, reader, errors) as nc:
        results = await nc.subscribe(f"{fn.subject}.result.>")
        await nc.flush()
        invoked = await http.post(f"{fn.path}/invoke", json={"payload": 3})
        assert invoked.status_code == 200
        assert (await results.next_msg(timeout=5)).subject == f"{fn.subject}.result.succeeded"
        with pytest.raises(nats.errors.TimeoutError):
            await nc.request(fn.subject, b"{}", timeout=1)
        await errors.violation(f'publish to "{fn.subject}"')


async def test_the_client_user_is_named_in_the_record(
    nats_server: EmbeddedNats, http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function(NODE_ECHO)
    client = await nats.connect(nats_server.urls["client"])
    try:
        reply = await client.request(fn.subject, b"1", timeout=10)
    finally:
        await client.close()
    invocation_id = (reply.headers or {})["Compute-Invocation-Id"]
    assert (await wait_for_record(http, fn, invocation_id))["caller"] == {
        "via": "nats",
        "user": "client",
    }


@pytest.mark.parametrize("kind", ["none", "unknown", "malformed", "user-password"])
async def test_no_valid_token_no_connection(
    nats_server: EmbeddedNats, http: httpx.AsyncClient, kind: str
) -> None:
    url = {
        "none": f"nats://127.0.0.1:{nats_server.port}",
        "unknown": token_url(nats_server, f"cbt_{'0' * 16}_{'x' * 43}"),
        "malformed": token_url(nats_server, "not-a-token"),
        "user-password": f"nats://client:wrong@127.0.0.1:{nats_server.port}",
    }[kind]

    async def quiet(_: Exception) -> None:
        pass

    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(
            url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=5, error_cb=quiet
        )


async def test_a_revoked_token_is_disconnected_and_cannot_reconnect(
    nats_server: EmbeddedNats, http: httpx.AsyncClient
) -> None:
    secret = await token(http, "invoke:*")
    token_id = secret.split("_")[1]
    closed = asyncio.Event()

    async def on_closed() -> None:
        closed.set()

    async with as_token(nats_server, secret, closed_cb=on_closed) as nc:
        assert nc.is_connected
        assert (await http.delete(f"/compute/tokens/{token_id}")).status_code == 200
        await asyncio.wait_for(closed.wait(), 2)
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        async with as_token(nats_server, secret, max_reconnect_attempts=0):
            pass


async def test_an_expiring_token_is_disconnected_when_it_expires(
    nats_server: EmbeddedNats, http: httpx.AsyncClient
) -> None:
    secret = await token(http, "invoke:*", expires_in_s=2)
    closed = asyncio.Event()

    async def on_closed() -> None:
        closed.set()

    async with as_token(nats_server, secret, closed_cb=on_closed) as nc:
        assert nc.is_connected
        await asyncio.wait_for(closed.wait(), 5)
