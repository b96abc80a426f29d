from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import pytest_asyncio
import uvloop
from nats.aio.client import Client

from bus.connect import connect
from bus.embedded import EmbeddedNats, start_embedded_nats
from executor.api.server import run_api
from executor.runtime.interpreters import find_interpreters
from executor.runtime.launch import launch, launch_plan
from executor.runtime.process import HandlerProcess
from executor.runtime.sandbox import Limits, Sandbox
from executor.settings import Settings
from executor.worker.start import run_worker
from schemas.handler_protocol import HandlerRequest, request_encoder
from schemas.invocations import HandlerContext


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


# The whole stack in the test process: a worker and the HTTP API (real uvicorn on a free port)
# against the session's nats-server. Handler processes are real node and python processes.


@dataclass
class Stack:
    api: str
    nats_url: str
    settings: Settings


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
        yield Stack(api=url, nats_url=nats_server.url, settings=settings)
    finally:
        stop.set()
        await asyncio.gather(worker, api)


@pytest_asyncio.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.api, timeout=60) as client:
        yield client


def b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def function_body(
    files: Mapping[str, str | bytes],
    *,
    runtime: str = "nodejs",
    handler: str = "index.handler",
    collection: str = "tests",
    name: str | None = None,
    timeout: int = 10_000,
    schema: dict[str, Any] | None = None,
    store_payload: bool = True,
    ttl: int = 600_000,
    compute_asset: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A create body; every call gets a fresh name unless one is given."""
    body: dict[str, Any] = {
        "name": name or f"fn-{uuid.uuid4().hex[:12]}",
        "compute_asset": {
            "collection_topic": collection,
            "handler": handler,
            "runtime": runtime,
            "timeout": timeout,
            "assets": [{"asset_name": n, "asset_value": b64(v)} for n, v in files.items()],
            **(compute_asset or {}),
        },
        "monitor_config": {"ttl": ttl, "store_payload": store_payload},
        **extra,
    }
    if schema is not None:
        body["schema"] = schema
    return body


@dataclass
class Fn:
    collection: str
    service: str
    body: dict[str, Any]

    @property
    def path(self) -> str:
        return f"/compute/functions/{self.collection}/{self.service}"

    @property
    def subject(self) -> str:
        return f"ms.compute.{self.collection}.function.{self.service}"


MakeFunction = Callable[..., Awaitable[Fn]]


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


async def wait_for_record(
    http: httpx.AsyncClient, fn: Fn, invocation_id: str, timeout: float = 5.0
) -> dict[str, Any]:
    """The monitor record of ``invocation_id`` (written right after the reply, so poll briefly)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        response = await http.get(f"{fn.path}/invocations/{invocation_id}")
        if response.status_code == 200:
            record: dict[str, Any] = response.json()["body"]
            return record
        assert asyncio.get_running_loop().time() < deadline, response.text
        await asyncio.sleep(0.05)


# ---- processes ---------------------------------------------------------------------------------


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def living_descendants() -> set[int]:
    """Processes under this test process (the in-process worker's handlers and sandboxes)."""
    return {pid for pid in descendants(os.getpid()) if alive(pid)}


# ---- more processes of the stack -------------------------------------------------------------


@asynccontextmanager
async def second_api(stack: Stack, **changes: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Another API process (same NATS, own connection and registry view), stopped on exit."""
    settings: Settings = dataclasses.replace(stack.settings, port=0, **changes)
    stop = asyncio.Event()
    url: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task: asyncio.Future[Any] = asyncio.create_task(
        run_api(stack.nats_url, settings, stop, on_ready=url.set_result)
    )
    try:
        done, _ = await asyncio.wait([task, url], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()  # raises what made it stop
        async with httpx.AsyncClient(base_url=await asyncio.wait_for(url, 30), timeout=30) as c:
            yield c
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


# ---- handler processes on their own -----------------------------------------------------------


@contextmanager
def reachable_dir() -> Iterator[Path]:
    """A fresh directory every uid can enter (pytest's tmp_path is private to root), for
    sandboxes without bubblewrap, whose processes see host paths under their own uid."""
    path = Path(tempfile.mkdtemp(prefix="computebus-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def world_python() -> str | None:
    """An interpreter a sandbox uid can run where no bubblewrap binds it: the default one if
    every directory above it lets anyone in, else the system's."""
    default = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    if all(p.stat().st_mode & 0o001 for p in default.parents):
        return None
    return "/usr/bin/python3"


@pytest.fixture(scope="session")
def bare_sandbox() -> Iterator[Sandbox]:
    """No sandbox: handler processes as plain children of the test, under its own uid."""
    sandbox = Sandbox.bare(find_interpreters(None, None))
    yield sandbox
    sandbox.close()


def handler_request(event: Any = None, memory_mb: int = 256) -> bytes:
    """One request frame body, as the invoker sends it to a handler process."""
    context = HandlerContext(
        invocation_id="test",
        collection_topic="tests",
        service="000000000",
        revision=1,
        deadline_ms=0,
        memory_mb=memory_mb,
    )
    return request_encoder.encode(
        HandlerRequest(event=msgspec.Raw(msgspec.json.encode(event)), context=context)
    )


async def spawn_python_handler(
    sandbox: Sandbox, workspace: Path, memory_mb: int = 256
) -> HandlerProcess:
    """A python handler process for ``workspace/index.py`` at ``sandbox``'s level."""
    plan = launch_plan(
        sandbox,
        runtime="python",
        handler_file="index.py",
        export="handler",
        workspace=workspace,
        env_vars=[],
        limits=Limits(memory_mb),
    )
    return await launch(sandbox, plan, log_cap=4096, max_reply_bytes=1 << 20)


# ---- counting executions -----------------------------------------------------------------------

# A handler that reports every run to the test's execution counter (over loopback, so the
# function needs compute_asset.network) and fails its first FAIL_TIMES runs of an invocation.
COUNTING_HANDLER = """
import os, socket, time

def handler(event, context):
    port = int(os.environ["COUNTER_PORT"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall((context.invocation_id + "\\n").encode())
        run = int(conn.makefile().readline())
    time.sleep(float(os.environ.get("SLEEP_S", "0")))
    if run <= int(os.environ.get("FAIL_TIMES", "0")):
        raise RuntimeError(f"failing on purpose, run {run}")
    return {"invocation_id": context.invocation_id, "run": run, "event": event}
"""


@dataclass
class ExecutionCounter:
    """How many times each invocation id ran (each run of COUNTING_HANDLER says so)."""

    port: int
    runs: dict[str, int] = dataclasses.field(default_factory=dict)

    def env(self, **more: Any) -> list[str]:
        return [f"COUNTER_PORT={self.port}", *(f"{k}={v}" for k, v in more.items())]


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
