"""What the tests share: the stack's handle, function bodies and makers, waiting for records,
process trees, handler processes without a worker, and the execution counter. Fixtures live in
conftest.py and use these; tests import them from here."""

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

from bus.connect import connect
from bus.tokens import TokenStore
from executor.api.server import run_api
from executor.runtime.launch import Handler, launch_assigned, launch_plan
from executor.runtime.limits import Limits
from executor.runtime.process import HandlerProcess
from executor.runtime.sandbox import Sandbox
from executor.serve import parse_ready_line
from executor.settings import Settings
from schemas.handler_protocol import HandlerRequest, request_encoder
from schemas.invocations import HandlerContext
from schemas.tokens import ADMIN, ADMIN_TOKEN_FILE


@dataclass
class Stack:
    """The whole stack in the test process: a worker and the HTTP API (real uvicorn on a free
    port) against the session's nats-server; handler processes are real node and python."""

    api: str
    nats_url: str
    settings: Settings
    token: str = ""  # the admin token the API made at its first start

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


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


async def workers_ready(http: httpx.AsyncClient) -> int:
    """How many workers the API hears from (``/readyz``)."""
    count: int = (await http.get("/readyz")).json()["workers"]
    return count


async def wait_for_workers(http: httpx.AsyncClient, count: int, timeout: float = 30.0) -> None:
    """Until the API hears from exactly ``count`` workers (one joined, or one drained and left)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (seen := await workers_ready(http)) != count:
        assert asyncio.get_running_loop().time() < deadline, f"{seen} workers, not {count}"
        await asyncio.sleep(0.1)


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


async def admin_token(nats_url: str, data_dir: Path) -> str:
    """The admin token the API wrote to ``data_dir``, or, when another API on the bus made the
    first one (tests share the session's nats-server), a fresh admin token."""
    path = data_dir / ADMIN_TOKEN_FILE
    if path.exists():
        return path.read_text().strip()
    nc = await connect(nats_url, name="computebus-test-token")
    try:
        store = await TokenStore.open(nc.jetstream())
        try:
            return (await store.issue("test admin", [ADMIN], None)).token
        finally:
            await store.close()
    finally:
        await nc.close()


@asynccontextmanager
async def second_api(
    stack: Stack, *, nats_url: str | None = None, **changes: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """Another API process (same NATS, own connection and registry view; connected as the
    operator unless ``nats_url`` names another user), stopped on exit."""
    settings: Settings = dataclasses.replace(stack.settings, port=0, **changes)
    stop = asyncio.Event()
    url: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task: asyncio.Future[Any] = asyncio.create_task(
        run_api(nats_url or stack.nats_url, settings, stop, on_ready=url.set_result)
    )
    try:
        done, _ = await asyncio.wait([task, url], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()  # raises what made it stop
        base_url = await asyncio.wait_for(url, 30)
        async with httpx.AsyncClient(base_url=base_url, timeout=30, headers=stack.auth) as c:
            yield c
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


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
    plan = launch_plan(sandbox, runtime="python", workspace=workspace, limits=Limits(memory_mb))
    handler = Handler("index.py", "handler", [])
    return await launch_assigned(sandbox, plan, handler, log_cap=4096, max_reply_bytes=1 << 20)


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


async def start_serve(
    *extra: str, env: dict[str, str] | None = None, stderr: int | None = None
) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    """``computebus serve`` as a child on a free port; the fields of its ready line."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "executor.cli",
        "serve",
        "--port",
        "0",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    return proc, parse_ready_line(line.decode().strip())


def token_of(fields: dict[str, str]) -> dict[str, str]:
    """The Authorization header with the admin token whose file the ready line names."""
    token = Path(fields["token-file"]).read_text().strip()
    return {"Authorization": f"Bearer {token}"}
