"""``computebus bench --cold``: cold start from create to first result, whole and in parts.

For each runtime, ``rounds`` times: an HTTP create of a new no-op function (the API has a worker
load it, which starts its first process or assigns it a spare), then its first sync invoke over
HTTP; one round every ``GAP_S`` (a worker makes a taken spare again in the meantime). The
worker's parts come from its ``computebus.coldstart`` log line (bundle fetch, unpack, sandbox
spawn or spare assignment, handler load) and the first invoke's monitor record (its time inside
the worker). A bare process (no sandbox, spawn plus first call) is measured in the same run as
the baseline.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from executor.bench import BenchFailed
from executor.bench.invoke import RawHttp, child, http_request
from executor.bench.sandbox_cost import SOURCES, _measure
from executor.runtime.interpreters import find_interpreters
from executor.runtime.sandbox import Sandbox
from executor.serve import READY, parse_ready_line
from executor.settings import Settings

_COLD_LINE = re.compile(
    r"cold start (?P<ct>[^/]+)/(?P<ft>[^/]+)/\d+: bundle (?P<bundle>[\d.]+) ms, "
    r"unpack (?P<unpack>[\d.]+) ms, spawn (?P<spawn>[\d.]+) ms, load (?P<load>[\d.]+) ms "
    r"\((?P<source>a spare|a new process)\)"
)
GAP_S = 0.5
# create_elsewhere: the create's round trip less the worker's parts (the API and the bus);
# warm_invoke: the same function's second invoke, the HTTP path without anything first.
PARTS = (
    "create",
    "first_invoke",
    "bundle",
    "unpack",
    "spawn",
    "load",
    "first_call",
    "create_elsewhere",
    "warm_invoke",
)


class _WorkerLog:
    """The serve child's stderr, read all the time; the worker's cold-start lines by service."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.lines: dict[str, dict[str, float]] = {}
        self._arrived = asyncio.Event()
        self._task = asyncio.create_task(self._read(stream))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            found = _COLD_LINE.search(line.decode(errors="replace"))
            if found:
                parts = ("bundle", "unpack", "spawn", "load")
                self.lines[found["ft"]] = {p: float(found[p]) for p in parts}
                self.lines[found["ft"]]["spare"] = float(found["source"] == "a spare")
                self._arrived.set()

    async def parts_of(self, service: str) -> dict[str, float]:
        async with asyncio.timeout(10):
            while service not in self.lines:
                self._arrived.clear()
                await self._arrived.wait()
        return self.lines.pop(service)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@dataclass(frozen=True)
class _Api:
    url: str
    token: str


@contextlib.asynccontextmanager
async def _serve(data_dir: Path) -> AsyncIterator[tuple[_Api, _WorkerLog]]:
    """``computebus serve`` with its worker's INFO lines on a pipe we read."""
    env = {**os.environ, "COMPUTEBUS_LOG_LEVEL": "INFO"}
    argv = (sys.executable, "-m", "executor.cli", "serve", "--port", "0", "--data-dir")
    stderr = asyncio.subprocess.PIPE
    async with child(*argv, str(data_dir), env=env, ready=READY.encode(), stderr=stderr) as (
        proc,
        line,
    ):
        assert proc.stderr is not None
        worker_log = _WorkerLog(proc.stderr)
        try:
            fields = parse_ready_line(line.decode().strip())
            token = Path(fields["token-file"]).read_text().strip()
            yield _Api(fields["api"], token), worker_log
        finally:
            await worker_log.close()


def _create_body(runtime: str, n: int) -> dict[str, object]:
    """A no-op of its own bundle (a comment makes it distinct), so every round fetches and
    unpacks one."""
    name, source = SOURCES[runtime]
    source += f"{'#' if runtime == 'python' else '//'} cold start {n}\n"
    return {
        "name": f"cold-{runtime}-{n}",
        "compute_asset": {
            "collection_topic": "bench",
            "handler": "index.handler",
            "runtime": runtime,
            "assets": [
                {"asset_name": name, "asset_value": base64.b64encode(source.encode()).decode()}
            ],
        },
        "monitor_config": {"ttl": 60_000, "store_payload": False},
    }


async def _one(
    client: httpx.AsyncClient, raw: RawHttp, worker_log: _WorkerLog, runtime: str, n: int
) -> dict[str, float]:
    """One round; what is timed goes over ``raw`` (httpx costs about 1.5 ms a request here,
    more than some of the parts measured), the reads after it over ``client``."""
    url = urlsplit(str(client.base_url))
    host, port = url.hostname or "127.0.0.1", url.port or 80
    token = client.headers["Authorization"].removeprefix("Bearer ")
    body = json.dumps(_create_body(runtime, n)).encode()
    create = http_request(host, port, "/compute/functions", body, token)
    t0 = time.perf_counter()
    status, _, answer = await raw.exchange(create)
    t1 = time.perf_counter()
    if status != 201:
        raise BenchFailed(f"create answered {status}: {answer[:300]!r}")
    ft = json.loads(answer)["body"]["compute_asset"]["service"]
    invoke = http_request(
        host, port, f"/compute/functions/bench/{ft}/invoke", b'{"payload":null}', token
    )
    status, headers, answer = await raw.exchange(invoke)
    t2 = time.perf_counter()
    if status != 200:
        raise BenchFailed(f"the first invoke answered {status}: {answer[:300]!r}")
    figures = {"whole": (t2 - t0) * 1000, "create": (t1 - t0) * 1000}
    figures["first_invoke"] = (t2 - t1) * 1000
    figures.update(await worker_log.parts_of(ft))
    inside = sum(figures[part] for part in ("bundle", "unpack", "spawn", "load"))
    figures["create_elsewhere"] = figures["create"] - inside
    t3 = time.perf_counter()
    again, _, answer = await raw.exchange(invoke)
    figures["warm_invoke"] = (time.perf_counter() - t3) * 1000
    if again != 200:
        raise BenchFailed(f"the second invoke answered {again}: {answer[:300]!r}")
    invocation = headers["x-invocation-id"]
    for _ in range(100):  # the record is written once the caller has its answer
        record = await client.get(f"/compute/functions/bench/{ft}/invocations/{invocation}")
        if record.status_code == 200:
            figures["first_call"] = float(record.json()["body"]["duration_ms"])
            return figures
        await asyncio.sleep(0.02)
    raise BenchFailed(f"no monitor record of the first invoke of {ft}")


async def _bare(runtimes: list[str], rounds: int, tmp: Path) -> dict[str, list[float]]:
    """Spawn plus first call of a bare process (no sandbox), per runtime."""
    settings = Settings.from_env(os.environ)
    bare = Sandbox.bare(find_interpreters(settings.python, settings.node))
    found: dict[str, list[float]] = {}
    try:
        for runtime in runtimes:
            name, source = SOURCES[runtime]
            workspace = tmp / f"bare-{runtime}"
            workspace.mkdir()
            (workspace / name).write_text(source)
            found[runtime] = [
                (await _measure(bare, runtime, workspace, 0))[0] * 1000 for _ in range(rounds)
            ]
    finally:
        bare.close()
    return found


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {"p50_ms": round(statistics.median(ordered), 3), "p99_ms": round(p99, 3)}


async def run_cold_bench(rounds: int = 20) -> int:
    results: dict[str, dict[str, dict[str, float]]] = {}
    spares: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="computebus-bench-cold-") as tmp:
        os.chmod(tmp, 0o755)  # the sandbox's uid must reach the workspaces
        async with _serve(Path(tmp) / "cb") as (api, worker_log):
            runtimes = ["python", "nodejs"]
            auth = {"Authorization": f"Bearer {api.token}"}
            where = urlsplit(api.url)
            raw = await RawHttp.open(where.hostname or "127.0.0.1", where.port or 80)
            try:
                async with httpx.AsyncClient(base_url=api.url, timeout=60, headers=auth) as client:
                    for runtime in runtimes:
                        rows = []
                        for n in range(rounds + 1):
                            await asyncio.sleep(GAP_S)
                            rows.append(await _one(client, raw, worker_log, runtime, n))
                        rows = rows[1:]  # the first warms the API's and the worker's code paths
                        results[runtime] = {
                            part: _summary([row[part] for row in rows])
                            for part in ("whole", *PARTS)
                        }
                        spares[runtime] = int(sum(row["spare"] for row in rows))
            finally:
                raw.close()
        bare = await _bare(runtimes, rounds, Path(tmp))
    for runtime, row in results.items():
        row["bare_spawn_and_first_call"] = _summary(bare[runtime])
        print(
            f"{runtime}: whole (create + first invoke) p50 {row['whole']['p50_ms']:.1f} ms, "
            f"{spares[runtime]} of {rounds} on a spare"
        )
        for part, figures in row.items():
            print(f"  {part:<26} p50 {figures['p50_ms']:8.3f} ms   p99 {figures['p99_ms']:8.3f} ms")
    print(json.dumps({"rounds": rounds, "on_a_spare": spares, **results}))
    return 0
