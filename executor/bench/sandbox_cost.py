"""``computebus bench --sandbox``: what the sandbox costs per handler process, cold and warm.

For each runtime, the same no-op handler is started and invoked with the sandbox this machine
offers and with none (a bare process), alternating so that noise hits both alike. Cold is spawn
plus the first invocation; warm is one invocation of a running process.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import msgspec

from executor.runtime.launch import Handler, launch_assigned, launch_plan, open_sandbox
from executor.runtime.limits import Limits
from executor.runtime.process import HandlerProcess
from executor.runtime.sandbox import Sandbox
from executor.settings import Settings
from schemas.handler_protocol import HandlerRequest, request_encoder
from schemas.invocations import HandlerContext

SOURCES = {
    "nodejs": ("index.js", "exports.handler = async () => null;\n"),
    "python": ("index.py", "def handler(event, context):\n    return None\n"),
}


def _request() -> bytes:
    context = HandlerContext(
        invocation_id="bench",
        collection_topic="bench",
        service="000000000",
        revision=1,
        deadline_ms=0,
        memory_mb=256,
    )
    return request_encoder.encode(HandlerRequest(event=msgspec.Raw(b"null"), context=context))


async def _spawn(sandbox: Sandbox, runtime: str, workspace: Path) -> HandlerProcess:
    file, _ = SOURCES[runtime]
    plan = launch_plan(sandbox, runtime=runtime, workspace=workspace, limits=Limits(256))
    handler = Handler(file, "handler", [])
    return await launch_assigned(sandbox, plan, handler, log_cap=4096, max_reply_bytes=1 << 20)


async def _measure(
    sandbox: Sandbox, runtime: str, workspace: Path, warm_calls: int
) -> tuple[float, list[float]]:
    request = _request()
    t0 = time.perf_counter()
    process = await _spawn(sandbox, runtime, workspace)
    try:
        await process.invoke(request, 30)
        cold = time.perf_counter() - t0
        warm = []
        for _ in range(warm_calls):
            t = time.perf_counter()
            await process.invoke(request, 30)
            warm.append(time.perf_counter() - t)
    finally:
        await process.kill()
    return cold, warm


async def run_sandbox_bench(rounds: int = 10, warm_calls: int = 300) -> int:
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="computebus-bench-sandbox-") as tmp:
        os.chmod(tmp, 0o755)  # the sandbox's uid must reach the workspaces
        settings = Settings.from_env(os.environ).with_overrides(data_dir=Path(tmp))
        sandboxed, _ = await asyncio.to_thread(
            open_sandbox, settings, f"computebus-bench-{time.time_ns()}"
        )
        bare = Sandbox.bare(sandboxed.interpreters)
        try:
            for runtime, (name, source) in SOURCES.items():
                if runtime not in sandboxed.interpreters:
                    continue
                workspace = Path(tmp) / runtime
                workspace.mkdir()
                (workspace / name).write_text(source)
                workspace.chmod(0o555)
                colds: dict[str, list[float]] = {"bare": [], "sandbox": []}
                warms: dict[str, list[float]] = {"bare": [], "sandbox": []}
                for _ in range(rounds):
                    for label, sandbox in (("bare", bare), ("sandbox", sandboxed)):
                        cold, warm = await _measure(
                            sandbox, runtime, workspace, warm_calls // rounds
                        )
                        colds[label].append(cold)
                        warms[label].extend(warm)
                row = {
                    f"{kind}_{label}_ms": statistics.median(values[label]) * 1000
                    for kind, values in (("cold", colds), ("warm", warms))
                    for label in ("bare", "sandbox")
                }
                row["cold_ratio"] = row["cold_sandbox_ms"] / row["cold_bare_ms"]
                row["warm_ratio"] = row["warm_sandbox_ms"] / row["warm_bare_ms"]
                results[runtime] = row
                workspace.chmod(0o755)
        finally:
            sandboxed.close()
            bare.close()
    print(f"isolation level: {sandboxed.level}")
    for runtime, row in results.items():
        print(
            f"{runtime:<7} cold {row['cold_bare_ms']:7.1f} -> {row['cold_sandbox_ms']:7.1f} ms "
            f"({row['cold_ratio']:.2f}x)   warm p50 {row['warm_bare_ms']:.3f} -> "
            f"{row['warm_sandbox_ms']:.3f} ms ({row['warm_ratio']:.2f}x)"
        )
    print(json.dumps({"level": sandboxed.level, **results}))
    return 0
