from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from nats.aio.client import Client

from bus.connect import connect
from bus.embedded import EmbeddedNats, start_embedded_nats


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
