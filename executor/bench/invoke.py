"""``computebus bench``: invoke throughput and latency beside bare baselines, in one run.

Each system under test runs in its own processes; the load comes from this process over
loopback with a small keep-alive HTTP/1.1 client (httpx would be the bottleneck) and nats-py.
Figures are printed as ratios to the bare baselines because the machine is shared and noisy.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import nats

from bus.connect import connect, with_credentials
from bus.embedded import CREDENTIALS_FILE, role_url, start_embedded_nats
from executor.bench import BenchFailed
from executor.bench.cpu_split import cpu_by_role, per_call_us
from executor.cluster import READY as CLUSTER_READY
from executor.serve import READY, parse_ready_line

BARE_HTTP_APP = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

async def echo(request: Request) -> Response:
    return Response(b'{"body":' + await request.body() + b'}', media_type="application/json")

app = Starlette(routes=[Route("/echo", echo, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
            log_level="warning", access_log=False, lifespan="off")
"""

BARE_NATS_ECHO = """
import asyncio, sys, nats, uvloop
async def main():
    nc = await nats.connect(sys.argv[1])
    async def echo(msg):
        await msg.respond(msg.data)
    await nc.subscribe("bench.echo", queue="bench", cb=echo)
    await nc.flush()  # the server has the subscription before anyone is told to call
    print("ready", flush=True)
    await asyncio.Event().wait()
uvloop.run(main())
"""

# The floor of the API's own libraries: an HTTP request answered with a NATS request to the
# bare echo (Starlette, uvicorn and nats-py, nothing of computebus).
BARE_BRIDGE = """
import sys, nats, uvicorn, uvloop
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

async def bridge(request: Request) -> Response:
    answer = await nc.request("bench.echo", await request.body(), timeout=10)
    return Response(b'{"body":' + answer.data + b'}', media_type="application/json")

async def main():
    global nc
    nc = await nats.connect(sys.argv[2])
    app = Starlette(routes=[Route("/echo", bridge, methods=["POST"])])
    config = uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[1]), loop="none",
                            http="httptools", log_level="warning", access_log=False,
                            lifespan="off")
    await uvicorn.Server(config).serve()
uvloop.run(main())
"""

NOOP = "exports.handler = async () => null;\n"


BARE_TOKEN = "cbt_0000000000000000_bare-echo-ignores-it"


@dataclass
class Figures:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: dict[str, float]  # CPU per call in the throughput phase, by process

    def line(self, name: str) -> str:
        split = ", ".join(f"{role} {us:.0f}" for role, us in self.cpu_us.items())
        return (
            f"{name:<28} {self.rps:>9.0f} req/s   "
            f"p50 {self.p50_ms:7.3f} ms   p99 {self.p99_ms:7.3f} ms   "
            f"CPU us/call: {split}"
        )


class RawHttp:
    """One keep-alive HTTP/1.1 connection that POSTs a fixed request and reads the answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> RawHttp:
        return cls(*await asyncio.open_connection(host, port))

    async def post(self, request: bytes) -> int:
        status, _, _ = await self.exchange(request)
        return status

    async def exchange(self, request: bytes) -> tuple[int, dict[str, str], bytes]:
        """Send ``request``; the answer's status, headers (names in lower case) and body."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        headers = {}
        for line in head[:-4].split(b"\r\n")[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body

    def close(self) -> None:
        self.writer.close()


def http_request(host: str, port: int, path: str, body: bytes, token: str) -> bytes:
    """A POST with a bearer token (the bare echo gets one too, so both read the same bytes)."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


@dataclass(frozen=True)
class Load:
    seconds: float
    concurrency: int
    samples: int


async def measure(
    call: Callable[[], Awaitable[object]], load: Load, roots: Mapping[int, str | None]
) -> Figures:
    """Latency one call at a time, then throughput with ``load.concurrency`` in flight, and the
    CPU each process of ``roots`` (and what runs under it) spent per call in that phase."""
    seconds, concurrency, samples = load.seconds, load.concurrency, load.samples
    # Warm at full concurrency first (as long as the phase, up to 5 s): every handler process
    # the throughput phase uses is started and its runtime's JIT warm before anything is
    # measured (cold starts are `bench --cold`'s).
    warm_until = time.perf_counter() + min(5.0, seconds)

    async def warm() -> None:
        while time.perf_counter() < warm_until:
            await call()

    await asyncio.gather(*(warm() for _ in range(concurrency)))
    latencies = []
    for _ in range(samples):
        t = time.perf_counter()
        await call()
        latencies.append(time.perf_counter() - t)
    latencies.sort()
    done = 0
    end = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal done
        while time.perf_counter() < end:
            await call()
            done += 1

    cpu_before = cpu_by_role(roots)
    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return Figures(
        rps=done / elapsed,
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[int(len(latencies) * 0.99) - 1] * 1000,
        cpu_us=per_call_us(cpu_before, cpu_by_role(roots), done),
    )


async def http_caller(
    host: str, port: int, path: str, body: bytes, pool_size: int, token: str
) -> tuple[Callable[[], Awaitable[None]], Callable[[], None]]:
    conns = [await RawHttp.open(host, port) for _ in range(pool_size)]
    idle = list(conns)
    request = http_request(host, port, path, body, token)

    async def call() -> None:
        conn = idle.pop()
        try:
            status = await conn.post(request)
        finally:
            idle.append(conn)
        if status != 200:
            raise BenchFailed(f"HTTP {status} from {path}")

    def close() -> None:
        for conn in conns:
            conn.close()

    return call, close


@contextlib.asynccontextmanager
async def child(
    *argv: str, env: dict[str, str] | None = None, ready: bytes, stderr: int | None = None
) -> AsyncIterator[tuple[asyncio.subprocess.Process, bytes]]:
    """``argv`` in its own session, once it has printed a line holding ``ready``; stopped
    (SIGTERM, then SIGKILL after 30 s) and reaped on the way out."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=stderr, env=env, start_new_session=True
    )
    assert proc.stdout is not None
    try:
        line = b""
        while ready not in line:
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            if not line:
                raise BenchFailed(f"{argv[0]} exited before it was ready")
        yield proc, line
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@dataclass(frozen=True)
class Served:
    """A ``computebus serve`` of the bench's own: where its API and NATS are, its admin token."""

    pid: int  # of ``serve`` or ``cluster``: every process of the stack runs under it
    api: str
    nats: str  # the client user's, as serve prints it
    worker_nats: str  # the worker user's, from the data dir, for more workers
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@contextlib.asynccontextmanager
async def serve_child(
    data_dir: Path, settings: Mapping[str, str] | None = None
) -> AsyncIterator[Served]:
    """``computebus serve`` in its own processes, on a free port, with a fresh data dir (and
    ``settings``, more environment)."""
    env = {**os.environ, "COMPUTEBUS_LOG_LEVEL": "WARNING", **(settings or {})}
    argv = (sys.executable, "-m", "executor.cli", "serve", "--port", "0", "--data-dir")
    async with child(*argv, str(data_dir), env=env, ready=READY.encode()) as (proc, line):
        fields = parse_ready_line(line.decode().strip())
        token = Path(fields["token-file"]).read_text().strip()
        where = urlsplit(fields["nats"])
        host, port = where.hostname or "127.0.0.1", where.port or 4222
        worker = role_url(data_dir / "nats", host, port, "worker")
        yield Served(proc.pid, fields["api"], fields["nats"], worker, token)


@contextlib.asynccontextmanager
async def cluster_child(data_dir: Path, workers: int) -> AsyncIterator[Served]:
    """``computebus cluster`` (three servers, one API, ``workers`` workers) of the bench's own."""
    env = {**os.environ, "COMPUTEBUS_LOG_LEVEL": "WARNING"}
    argv = (sys.executable, "-m", "executor.cli", "cluster", "--apis", "1", "--port", "0")
    more = ("--workers", str(workers), "--data-dir", str(data_dir))
    async with child(*argv, *more, env=env, ready=CLUSTER_READY.encode()) as (proc, line):
        text = line.decode().strip()
        fields = dict(part.split("=", 1) for part in text[len(CLUSTER_READY) :].split())
        token = Path(fields["token-file"]).read_text().strip()
        password = json.loads((data_dir / "nats" / CREDENTIALS_FILE).read_text())["users"]
        worker = with_credentials(fields["nats"], "worker", password["worker"])
        yield Served(proc.pid, fields["api"].split(",")[0], fields["nats"], worker, token)


def stack_child(
    data_dir: Path, cluster_workers: int
) -> contextlib.AbstractAsyncContextManager[Served]:
    """``serve`` (``cluster_workers`` 0), or a local cluster with that many workers."""
    return cluster_child(data_dir, cluster_workers) if cluster_workers else serve_child(data_dir)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def run_bench(
    *, seconds: float, concurrency: int, samples: int, cluster_workers: int = 0
) -> int:
    results: dict[str, Figures] = {}
    load = Load(seconds=seconds, concurrency=concurrency, samples=samples)
    with tempfile.TemporaryDirectory(prefix="computebus-bench-") as tmp:
        port = free_port()
        async with child(
            sys.executable,
            "-c",
            BARE_HTTP_APP,
            str(port),
            ready=b"",
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        ) as (echo, _):
            await _wait_http(port)
            call, close = await http_caller(
                "127.0.0.1", port, "/echo", b"null", concurrency, BARE_TOKEN
            )
            results["bare starlette echo"] = await measure(call, load, {echo.pid: "echo"})
            close()

        server = await start_embedded_nats(Path(tmp) / "bare-nats")
        try:
            async with child(sys.executable, "-c", BARE_NATS_ECHO, server.url, ready=b"ready") as (
                echo,
                _,
            ):
                nc = await nats.connect(server.url)
                bare_nats = {echo.pid: "echo", server.process.pid: "nats-server"}
                results["bare nats echo"] = await measure(
                    lambda: nc.request("bench.echo", b"null", timeout=10), load, bare_nats
                )
                await nc.close()
                port = free_port()
                argv = (sys.executable, "-c", BARE_BRIDGE, str(port), server.url)
                async with child(*argv, ready=b"") as (bridge, _):
                    await _wait_http(port)
                    call, close = await http_caller(
                        "127.0.0.1", port, "/echo", b"null", concurrency, BARE_TOKEN
                    )
                    bare_nats[bridge.pid] = "bridge"
                    results["bare http->nats bridge"] = await measure(call, load, bare_nats)
                    close()
        finally:
            await server.stop()

        async with stack_child(Path(tmp) / "cb", cluster_workers) as served:
            ct, ft = await create_noop(served)
            api_port = int(served.api.rsplit(":", 1)[1])
            path = f"/compute/functions/{ct}/{ft}/invoke"
            call, close = await http_caller(
                "127.0.0.1", api_port, path, b'{"payload":null}', concurrency, served.token
            )
            stack: dict[int, str | None] = {served.pid: None}
            results["computebus http invoke"] = await measure(call, load, stack)
            close()
            nc = await connect(served.nats, name="computebus-bench")
            subject = f"ms.compute.{ct}.function.{ft}"
            results["computebus nats invoke"] = await measure(
                lambda: nc.request(subject, b"null", timeout=10), load, stack
            )
            await nc.close()

    for name, figures in results.items():
        print(figures.line(name))
    http_ratio = results["computebus http invoke"].rps / results["bare starlette echo"].rps
    nats_ratio = results["computebus nats invoke"].p50_ms / results["bare nats echo"].p50_ms
    print(f"http throughput vs bare starlette: {http_ratio:.2f}x (target >= 0.35x, aim 0.5x)")
    print(f"nats p50 latency vs bare nats echo: {nats_ratio:.2f}x (target <= 1.4x, aim 1.3x)")
    split = results["computebus http invoke"].cpu_us
    print(
        f"CPU per sync HTTP invocation: api {split.get('api', 0):.0f} us (target <= 90), "
        f"worker {split.get('worker', 0):.0f} us (target <= 100); the bare bridge's server "
        f"{results['bare http->nats bridge'].cpu_us.get('bridge', 0):.0f} us"
    )
    print(
        json.dumps(
            {k: vars(v) for k, v in results.items()}
            | {
                "http_throughput_ratio": round(http_ratio, 3),
                "nats_p50_ratio": round(nats_ratio, 3),
            }
        )
    )
    return 0


async def _wait_http(port: int) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            with contextlib.suppress(httpx.TransportError):
                await client.post(f"http://127.0.0.1:{port}/echo", content=b"null")
                return
            await asyncio.sleep(0.05)
    raise BenchFailed("the bare starlette echo did not start")


async def create_noop(served: Served) -> tuple[str, str]:
    body = {
        "name": "bench-noop",
        "compute_asset": {
            "collection_topic": "bench",
            "handler": "index.handler",
            "assets": [
                {"asset_name": "index.js", "asset_value": base64.b64encode(NOOP.encode()).decode()}
            ],
        },
        "monitor_config": {"ttl": 60_000, "store_payload": False},
    }
    async with httpx.AsyncClient(base_url=served.api, timeout=30, headers=served.auth) as client:
        response = await client.post("/compute/functions", json=body)
        response.raise_for_status()
        return "bench", response.json()["body"]["compute_asset"]["service"]
