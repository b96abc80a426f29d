"""``computebus bench --flood``: one function's latency alone, and again while another
function is flooded with calls that never finish, in the same run; first for sync calls, then
for Async ones (submitted over HTTP, timed until their result event arrives on NATS).

The flood comes from a separate process (a client in this one would slow the measurement
itself): ``clients`` loops, each calling the hanging function again as soon as it is answered
(429 past its max_concurrency, 504 at its timeout), until the measurement ends or at most
``FLOOD_MAX_S``. The Async flood is ``clients`` hanging invocations queued at once. The
figures that matter are the ratios of the victim's p50.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from bus import subjects
from bus.connect import connect
from executor.bench import BenchFailed
from executor.bench.invoke import RawHttp, Served, child, http_request, serve_child

VICTIM = ("nodejs", "index.js", "exports.handler = async (e) => e;\n")
HOG = ("python", "index.py", "import time\ndef handler(event, context):\n    time.sleep(3600)\n")
HOG_TIMEOUT_MS = 3000
FLOOD_MAX_S = 120  # the flood stops by itself even if this process is gone

FLOOD = """
import asyncio, sys, time
import httpx
async def main(api, token, path, clients, seconds):
    limits = httpx.Limits(max_connections=clients)
    auth = {"Authorization": "Bearer " + token}
    async with httpx.AsyncClient(base_url=api, timeout=60, limits=limits, headers=auth) as client:
        end = time.monotonic() + seconds
        async def loop():
            while time.monotonic() < end:
                await client.post(path, json={"payload": 0})
        print("flooding", flush=True)
        await asyncio.gather(*(loop() for _ in range(clients)))
asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])))
"""


async def _create(served: Served, name: str, spec: tuple[str, str, str], timeout: int) -> str:
    """The function's HTTP path."""
    runtime, file, source = spec
    body = {
        "name": name,
        "compute_asset": {
            "collection_topic": "bench",
            "handler": "index.handler",
            "runtime": runtime,
            "timeout": timeout,
            "assets": [
                {"asset_name": file, "asset_value": base64.b64encode(source.encode()).decode()}
            ],
        },
        "monitor_config": {"ttl": 60_000, "store_payload": False},
    }
    async with httpx.AsyncClient(base_url=served.api, timeout=30, headers=served.auth) as client:
        response = await client.post("/compute/functions", json=body)
        response.raise_for_status()
        return f"/compute/functions/bench/{response.json()['body']['compute_asset']['service']}"


async def _latencies(served: Served, path: str, samples: int) -> list[float]:
    parts = urlsplit(served.api)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    conn = await RawHttp.open(host, port)
    request = http_request(host, port, f"{path}/invoke", b'{"payload": 1}', served.token)
    try:
        for _ in range(20):
            await conn.post(request)
        found = []
        for _ in range(samples):
            t = time.perf_counter()
            status = await conn.post(request)
            found.append((time.perf_counter() - t) * 1000)
            if status != 200:
                raise BenchFailed(f"the victim answered {status}")
        return sorted(found)
    finally:
        conn.close()


async def _async_latencies(served: Served, path: str, samples: int) -> list[float]:
    """Submit one Async invocation at a time; each takes until its result event arrives."""
    ft = path.rsplit("/", 1)[1]
    nc = await connect(served.nats, name="computebus-bench")
    results = await nc.subscribe(subjects.result_subject("bench", ft, "*"))
    body = {"payload": 1, "invocation_type": "Async"}
    found = []
    try:
        async with httpx.AsyncClient(
            base_url=served.api, timeout=30, headers=served.auth
        ) as client:
            for i in range(samples + 10):
                t = time.perf_counter()
                accepted = await client.post(f"{path}/invoke", json=body)
                if accepted.status_code != 202:
                    raise BenchFailed(f"the Async victim answered {accepted.status_code}")
                event = await results.next_msg(timeout=30)
                if not event.subject.endswith(".succeeded"):
                    raise BenchFailed(f"the Async victim failed: {event.data[:200]!r}")
                if i >= 10:  # the first ones warm its process
                    found.append((time.perf_counter() - t) * 1000)
    finally:
        await nc.close()
    return sorted(found)


async def _async_flood(served: Served, path: str, count: int) -> None:
    body = {"payload": 0, "invocation_type": "Async"}
    async with httpx.AsyncClient(base_url=served.api, timeout=30, headers=served.auth) as client:
        for start in range(0, count, 50):
            size = min(50, count - start)
            burst = [client.post(f"{path}/invoke", json=body) for _ in range(size)]
            for answer in await asyncio.gather(*burst):
                if answer.status_code != 202:
                    raise BenchFailed(f"the Async flood was answered {answer.status_code}")


def _figures(latencies: list[float]) -> dict[str, float]:
    return {
        "p50_ms": statistics.median(latencies),
        "p95_ms": latencies[int(len(latencies) * 0.95) - 1],
    }


async def run_flood_bench(*, clients: int = 300, samples: int = 300) -> int:
    with tempfile.TemporaryDirectory(prefix="computebus-bench-flood-") as tmp:
        async with serve_child(Path(tmp)) as served:
            victim = await _create(served, "bench-victim", VICTIM, 5000)
            hog = await _create(served, "bench-hog", HOG, HOG_TIMEOUT_MS)
            alone = _figures(await _latencies(served, victim, samples))
            started = time.monotonic()
            flood = (served.api, served.token, hog, str(clients), str(FLOOD_MAX_S))
            async with child(sys.executable, "-c", FLOOD, *flood, ready=b"flooding"):
                await asyncio.sleep(1.0)  # the hog's processes are full and its waiters queued
                flooded = _figures(await _latencies(served, victim, samples))
                seconds = time.monotonic() - started
            async_samples = max(20, samples // 5)
            async_alone = _figures(await _async_latencies(served, victim, async_samples))
            await _async_flood(served, hog, clients)
            await asyncio.sleep(1.0)  # the hog holds every Async slot it may take
            async_flooded = _figures(await _async_latencies(served, victim, async_samples))
            with contextlib.suppress(httpx.HTTPError):  # its queued flood goes with it
                async with httpx.AsyncClient(
                    base_url=served.api, timeout=30, headers=served.auth
                ) as client:
                    await client.delete(hog)
    ratio = flooded["p50_ms"] / alone["p50_ms"]
    async_ratio = async_flooded["p50_ms"] / async_alone["p50_ms"]
    print(f"victim alone           p50 {alone['p50_ms']:7.3f} ms   p95 {alone['p95_ms']:7.3f} ms")
    print(
        f"victim during a flood  p50 {flooded['p50_ms']:7.3f} ms   p95 {flooded['p95_ms']:7.3f} ms"
    )
    print(f"p50 ratio: {ratio:.2f}x (aim <= 2x); {clients} flood clients for {seconds:.1f} s")
    print(
        f"Async victim alone           p50 {async_alone['p50_ms']:7.3f} ms"
        f"   p95 {async_alone['p95_ms']:7.3f} ms"
    )
    print(
        f"Async victim during a flood  p50 {async_flooded['p50_ms']:7.3f} ms"
        f"   p95 {async_flooded['p95_ms']:7.3f} ms"
    )
    print(f"Async p50 ratio: {async_ratio:.2f}x (aim <= 2x); {clients} hanging Async calls queued")
    figures = {
        "alone": alone,
        "flooded": flooded,
        "p50_ratio": ratio,
        "async_alone": async_alone,
        "async_flooded": async_flooded,
        "async_p50_ratio": async_ratio,
        "clients": clients,
    }
    print(json.dumps(figures))
    return 0
