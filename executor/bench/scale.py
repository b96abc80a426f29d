"""``computebus bench --functions N``: what N registered functions cost, in one run.

One ``computebus serve`` of the bench's own (idle timeout ``idle_s``, so reaping shows within
the run): a probe function's sync invoke p50 (HTTP and NATS, one in flight) first alone, then
again once N more functions were registered through the API by several connections at once;
the listing's p50 with N; the API's and worker's RSS; how long a new ``computebus worker``
takes until it says it is ready, with its registry view synced (its log line counts what the
view holds); RSS per warm handler process and of a worker holding ``warm`` warm revisions, and
what is left once the idle timeout has passed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from bus.connect import connect
from executor.bench import BenchFailed
from executor.bench.invoke import RawHttp, Served, http_request, serve_child
from executor.bench.proc_tree import (
    child_running,
    handler_processes,
    pss_kib,
    rss_kib,
)
from executor.bench.scale_report import report
from executor.settings import Settings

COLLECTION = "scale"
SOURCES = {
    "nodejs": ("index.js", "exports.handler = async () => null; // {i}\n"),
    "python": ("index.py", "def handler(event, context):\n    return None  # {i}\n"),
}
REGISTER_CONNECTIONS = 16
WARM_CONNECTIONS = 4
WARM_PASSES = 4
LISTING_MAX_S = 30.0  # the listing is sampled at most this long (it may be slow at first)
WORKER_READY_S = 120.0
_READY_COUNT = re.compile(rb"ready.*?(\d+) functions")


def _body(name: str, runtime: str, i: int) -> dict[str, Any]:
    file, source = SOURCES[runtime]
    asset = base64.b64encode(source.format(i=i).encode()).decode()
    return {
        "name": name,
        "compute_asset": {
            "collection_topic": COLLECTION,
            "handler": "index.handler",
            "runtime": runtime,
            "assets": [{"asset_name": file, "asset_value": asset}],
        },
        "monitor_config": {"ttl": 60_000, "store_payload": False},
    }


@dataclass(frozen=True)
class Stack:
    served: Served
    api_pid: int  # serve runs the API in its own process
    worker_pid: int


@contextlib.asynccontextmanager
async def scale_stack(data_dir: Path, idle_s: float, warm: int) -> AsyncIterator[Stack]:
    settings = {
        "COMPUTEBUS_IDLE_S": str(idle_s),
        "COMPUTEBUS_WORKER_CONCURRENCY": str(max(256, warm + 16)),
    }
    async with serve_child(data_dir, settings) as served:
        worker = child_running(served.pid, "executor.cli", "worker")
        if worker is None:
            raise BenchFailed("serve's worker process was not found")
        yield Stack(served, served.pid, worker)


async def register(served: Served, n: int, first: int = 0) -> tuple[list[str], float]:
    """Create functions ``first``..``first+n-1`` (Node and Python by turns); their service ids
    in that order, and the seconds it took."""
    services = [""] * n
    next_i = 0
    limits = httpx.Limits(max_connections=REGISTER_CONNECTIONS)

    async with httpx.AsyncClient(
        base_url=served.api, timeout=120, headers=served.auth, limits=limits
    ) as client:

        async def loop() -> None:
            nonlocal next_i
            while next_i < n:
                i, next_i = next_i, next_i + 1
                runtime = "nodejs" if (first + i) % 2 == 0 else "python"
                body = _body(f"scale-{first + i:06d}", runtime, first + i)
                answer = await client.post("/compute/functions", json=body)
                if answer.status_code != 201:
                    raise BenchFailed(f"create answered {answer.status_code}: {answer.text[:300]}")
                services[i] = answer.json()["body"]["compute_asset"]["service"]

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(min(REGISTER_CONNECTIONS, n))))
        return services, time.perf_counter() - started


async def timed(call: Callable[[], Awaitable[object]], samples: int) -> list[float]:
    """Seconds per call, one in flight (after a few untimed ones)."""
    for _ in range(min(20, samples)):
        await call()
    found = []
    for _ in range(samples):
        t = time.perf_counter()
        await call()
        found.append(time.perf_counter() - t)
    return found


def _api_address(served: Served) -> tuple[str, int]:
    parts = urlsplit(served.api)
    return parts.hostname or "127.0.0.1", parts.port or 80


async def invoke_samples(
    served: Served, service: str, samples: int
) -> tuple[list[float], list[float]]:
    """Sync invokes of one function over HTTP, then over NATS, one call in flight."""
    host, port = _api_address(served)
    path = f"/compute/functions/{COLLECTION}/{service}/invoke"
    request = http_request(host, port, path, b'{"payload":null}', served.token)
    conn = await RawHttp.open(host, port)

    async def http_call() -> None:
        if (status := await conn.post(request)) != 200:
            raise BenchFailed(f"HTTP invoke answered {status}")

    try:
        http = await timed(http_call, samples)
    finally:
        conn.close()
    nc = await connect(served.nats, name="computebus-bench")
    try:
        subject = f"ms.compute.{COLLECTION}.function.{service}"
        over_nats = await timed(lambda: nc.request(subject, b"null", timeout=30), samples)
    finally:
        await nc.close()
    return http, over_nats


def p50_ms(found: list[float]) -> float:
    return statistics.median(found) * 1000


async def interleaved_p50s(
    served: Served, service: str, other: Served, other_service: str, samples: int
) -> tuple[tuple[float, float], tuple[float, float]]:
    """(HTTP, NATS) p50 of each of two stacks, measured by turns in rounds, so that both see
    the same moments of a noisy machine."""
    found: list[list[float]] = [[], [], [], []]
    rounds = 5
    for _ in range(rounds):
        for at, (stack, fn) in enumerate(((served, service), (other, other_service))):
            http, over_nats = await invoke_samples(stack, fn, max(1, samples // rounds))
            found[2 * at].extend(http)
            found[2 * at + 1].extend(over_nats)
    p = [p50_ms(f) for f in found]
    return (p[0], p[1]), (p[2], p[3])


async def listing_p50(served: Served, samples: int) -> tuple[float, int, int]:
    """``GET /compute/functions?limit=50``: p50 ms, samples taken, and the total it reports."""
    host, port = _api_address(served)
    path = "/compute/functions?limit=50"
    async with httpx.AsyncClient(base_url=served.api, timeout=120, headers=served.auth) as client:
        answer = await client.get(path)
        answer.raise_for_status()
        total = int(answer.json()["body"]["results_total"])
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {served.token}\r\n\r\n"
    ).encode()
    conn = await RawHttp.open(host, port)
    found: list[float] = []
    end = time.perf_counter() + LISTING_MAX_S
    try:
        while len(found) < samples and (len(found) < 5 or time.perf_counter() < end):
            t = time.perf_counter()
            if (status := await conn.post(request)) != 200:
                raise BenchFailed(f"the listing answered {status}")
            found.append(time.perf_counter() - t)
    finally:
        conn.close()
    return statistics.median(found) * 1000, len(found), total


async def new_worker_ready(served: Served, data_dir: Path) -> tuple[float, int, int]:
    """Start ``computebus worker`` against the stack: seconds until its ready line (logged once
    its registry view has caught up), the functions that view holds, and its RSS then (KiB)."""
    env = {
        **os.environ,
        "NATS_URL": served.worker_nats,
        "COMPUTEBUS_DATA_DIR": str(data_dir),
        "COMPUTEBUS_LOG_LEVEL": "INFO",
    }
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "executor.cli",
        "worker",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stderr is not None
    try:
        deadline = started + WORKER_READY_S
        while True:
            line = await asyncio.wait_for(proc.stderr.readline(), deadline - time.perf_counter())
            if not line:
                raise BenchFailed("the new worker exited before it was ready")
            if (found := _READY_COUNT.search(line)) is not None:
                return time.perf_counter() - started, int(found[1]), rss_kib(proc.pid)
    finally:
        if proc.returncode is None:
            proc.terminate()
        with contextlib.suppress(TimeoutError):  # read what it says while it drains
            await asyncio.wait_for(proc.stderr.read(), 60)
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await proc.wait()


def warm_count(worker_pid: int) -> int:
    return sum(len(pids) for pids in handler_processes(worker_pid).values())


async def wait_reaped(worker_pid: int, floor: int, limit_s: float) -> tuple[float, int]:
    """Until at most ``floor`` handler processes are left under the worker (or ``limit_s``):
    the seconds it took and how many are left."""
    started = time.perf_counter()
    while (left := warm_count(worker_pid)) > floor and time.perf_counter() - started < limit_s:
        await asyncio.sleep(0.25)
    return time.perf_counter() - started, left


async def warm_up(served: Served, services: list[str], worker_pid: int, floor: int) -> None:
    """One call each (a few at once), again until each holds a warm process (a slow first pass
    may outlast the idle timeout), at most ``WARM_PASSES`` times."""
    nc = await connect(served.nats, name="computebus-bench")

    async def loop(todo: list[str]) -> None:
        while todo:
            service = todo.pop()
            await nc.request(f"ms.compute.{COLLECTION}.function.{service}", b"null", 60)

    try:
        for _ in range(WARM_PASSES):
            todo = list(services)
            await asyncio.gather(*(loop(todo) for _ in range(WARM_CONNECTIONS)))
            if warm_count(worker_pid) >= len(services) + floor:
                return
    finally:
        await nc.close()


def _median_mib(pids: list[int]) -> float:
    sizes = [rss_kib(pid) for pid in pids]
    return statistics.median(sizes) / 1024 if sizes else 0.0


async def run_scale_bench(
    *, functions: int, samples: int, warm: int = 200, idle_s: float = 15.0
) -> int:
    mib = 1 / 1024
    fig: dict[str, Any] = {"functions": functions}
    # What a worker keeps started without any invocation: a spare per runtime in use.
    floor = Settings.from_env(os.environ).spares * len(SOURCES)
    with tempfile.TemporaryDirectory(prefix="computebus-bench-scale-") as tmp:
        async with (
            scale_stack(Path(tmp) / "cb", idle_s, warm) as stack,
            scale_stack(Path(tmp) / "reference", idle_s, warm) as reference,
        ):
            served, worker = stack.served, stack.worker_pid
            (probe,), _ = await register(served, 1)
            (ref_probe,), _ = await register(reference.served, 1)
            http, over_nats = await invoke_samples(served, probe, samples)
            fig["http_p50_ms_one"], fig["nats_p50_ms_one"] = p50_ms(http), p50_ms(over_nats)
            services, seconds = await register(served, functions, first=1)
            fig["register_s"] = seconds
            fig["register_per_s"] = functions / seconds
            fig["register_connections"] = REGISTER_CONNECTIONS
            fig["api_rss_mib"] = rss_kib(stack.api_pid) * mib
            fig["worker_rss_mib"] = rss_kib(worker) * mib
            fig["list_p50_ms"], fig["list_samples"], fig["list_total"] = await listing_p50(
                served, samples
            )
            ready_s, seen, rss = await new_worker_ready(served, Path(tmp) / "new-worker")
            fig["new_worker_ready_s"], fig["new_worker_functions"] = ready_s, seen
            fig["new_worker_rss_mib"] = rss * mib
            # Back to the probe's warm process alone (and the spares), as for the first figure.
            await wait_reaped(worker, floor, idle_s * 2 + 10)
            ours, ref = await interleaved_p50s(served, probe, reference.served, ref_probe, samples)
            fig["http_p50_ms_n"], fig["nats_p50_ms_n"] = ours
            fig["http_p50_ms_reference"], fig["nats_p50_ms_reference"] = ref
            fig["http_p50_ratio"] = ours[0] / ref[0]
            fig["nats_p50_ratio"] = ours[1] / ref[1]
            fig["http_p50_ratio_to_before"] = ours[0] / fig["http_p50_ms_one"]
            fig["nats_p50_ratio_to_before"] = ours[1] / fig["nats_p50_ms_one"]

            await warm_up(served, services[: min(warm, functions)], worker, floor)
            handlers = handler_processes(worker)
            fig["warm_processes"] = sum(len(p) for p in handlers.values())
            fig["python_handler_rss_mib"] = _median_mib(handlers["python"])
            fig["node_handler_rss_mib"] = _median_mib(handlers["nodejs"])
            fig["worker_rss_warm_mib"] = rss_kib(worker) * mib
            all_handlers = [pid for pids in handlers.values() for pid in pids]
            fig["handlers_rss_warm_mib"] = sum(rss_kib(pid) for pid in all_handlers) * mib
            fig["handlers_pss_warm_mib"] = sum(pss_kib(pid) for pid in all_handlers) * mib
            fig["idle_s"] = idle_s
            fig["spares"] = floor
            fig["reaped_after_s"], fig["warm_after_idle"] = await wait_reaped(
                worker, floor, idle_s * 2 + 10
            )
            fig["worker_rss_after_idle_mib"] = rss_kib(worker) * mib
    report(fig)
    return 0
