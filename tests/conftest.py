"""The fixtures: a session nats-server, a client, the whole stack, an HTTP client, a function
maker, a bare sandbox and the execution counter."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import nats
import pytest
import pytest_asyncio
import uvloop
from nats.aio.client import Client

from bus.connect import connect
from bus.embedded import EmbeddedNats, start_embedded_nats
from executor.api.server import run_api
from executor.runtime.interpreters import find_interpreters
from executor.runtime.sandbox import Sandbox
from executor.settings import Settings
from executor.worker.start import run_worker
from tests.helpers import (
    ExecutionCounter,
    Fn,
    MakeFunction,
    Stack,
    admin_token,
    function_body,
)


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every test runs on uvloop, as ``computebus`` does (its subprocesses, for one, differ)."""
    return {"uvloop": uvloop.new_event_loop}


@pytest_asyncio.fixture(scope="session")
async def nats_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedNats]:
    server = await start_embedded_nats(tmp_path_factory.mktemp("nats"))
    try:
        yield server
    finally:
        await server.stop()


@pytest_asyncio.fixture
async def nc(nats_server: EmbeddedNats) -> AsyncIterator[Client]:
    client = await connect(nats_server.url, name="computebus-test")
    try:
        yield client
    finally:
        if not client.is_closed:
            await client.drain()


@pytest_asyncio.fixture
async def client(nats_server: EmbeddedNats) -> AsyncIterator[Client]:
    """A connection as the ``client`` user (the APP account), as an application connects."""
    nc = await nats.connect(nats_server.urls["client"])
    try:
        yield nc
    finally:
        if not nc.is_closed:
            await nc.drain()


@pytest_asyncio.fixture(scope="session")
async def stack(
    nats_server: EmbeddedNats, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("computebus"),
        port=0,
        idle_s=60.0,
        drain_s=5.0,
        bundle_gc_grace_s=0.0,
        allow_network=True,
        async_ack_wait_s=2.0,
        # No processes starting in the background, so that tests can count what an invocation
        # left; tests/e2e/test_spares.py runs workers with spares.
        spares=0,
        worker_metrics_port=0,
    )
    stop = asyncio.Event()
    worker_ready = asyncio.Event()
    api_url: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    worker = asyncio.create_task(
        run_worker(nats_server.url, settings, stop, on_ready=worker_ready.set)
    )
    api = asyncio.create_task(run_api(nats_server.url, settings, stop, on_ready=api_url.set_result))
    ready = asyncio.ensure_future(worker_ready.wait())
    await asyncio.wait([worker, ready], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if worker.done():
        worker.result()  # raises what stopped the worker at start-up
    await asyncio.wait_for(ready, 30)
    url = await asyncio.wait_for(api_url, 30)
    try:
        token = await admin_token(nats_server.url, settings.data_dir)
        yield Stack(api=url, nats_url=nats_server.url, settings=settings, token=token)
    finally:
        stop.set()
        await asyncio.gather(worker, api)


@pytest_asyncio.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.api, timeout=60, headers=stack.auth) as client:
        yield client


@pytest.fixture
def make_function(http: httpx.AsyncClient) -> MakeFunction:
    """Create a function from ``files`` (name -> source) and return where it lives."""

    async def make(files: dict[str, str | bytes], **options: Any) -> Fn:
        body = function_body(files, **options)
        response = await http.post("/compute/functions", json=body)
        assert response.status_code == 201, response.text
        created = response.json()["body"]
        return Fn(
            body["compute_asset"]["collection_topic"], created["compute_asset"]["service"], body
        )

    return make


@pytest.fixture(scope="session")
def bare_sandbox() -> Iterator[Sandbox]:
    """No sandbox: handler processes as plain children of the test, under its own uid."""
    sandbox = Sandbox.bare(find_interpreters(None, None))
    yield sandbox
    sandbox.close()


@pytest_asyncio.fixture
async def counter() -> AsyncIterator[ExecutionCounter]:
    found = ExecutionCounter(port=0)

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            invocation_id = (await reader.readline()).decode().strip()
            found.runs[invocation_id] = found.runs.get(invocation_id, 0) + 1
            writer.write(f"{found.runs[invocation_id]}\n".encode())
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    found.port = server.sockets[0].getsockname()[1]
    try:
        yield found
    finally:
        server.close()
        await server.wait_closed()
