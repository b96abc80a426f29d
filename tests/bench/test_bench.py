"""``computebus bench`` runs end to end and reports every figure (no speed is asserted)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from executor.bench.cold_start import PARTS


async def bench(*flags: str) -> dict[str, Any]:
    """Run ``computebus bench FLAGS`` as a user would; its last line is the figures as JSON."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "executor.cli",
        "bench",
        *flags,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    figures: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return figures


async def test_bench_reports_all_four_systems_and_the_ratios() -> None:
    figures = await bench("--seconds", "0.3", "--samples", "30", "--concurrency", "4")
    for name in (
        "bare starlette echo",
        "bare nats echo",
        "bare http->nats bridge",
        "computebus http invoke",
        "computebus nats invoke",
    ):
        assert figures[name]["rps"] > 0
        assert 0 < figures[name]["p50_ms"] <= figures[name]["p99_ms"]
    assert figures["http_throughput_ratio"] > 0
    assert figures["nats_p50_ratio"] > 0
    split = figures["computebus http invoke"]["cpu_us"]  # clock ticks: a short run may read 0
    assert {"api", "worker", "handlers", "nats-server", "load generator"} <= set(split), split
    assert all(us >= 0 for us in split.values()) and split["api"] + split["worker"] > 0, split


async def test_sandbox_bench_reports_cold_and_warm_for_both_runtimes() -> None:
    figures = await bench("--sandbox")
    assert figures["level"]
    for runtime in ("nodejs", "python"):
        row = figures[runtime]
        for key in ("cold_bare_ms", "cold_sandbox_ms", "warm_bare_ms", "warm_sandbox_ms"):
            assert row[key] > 0, (runtime, key)


async def test_async_bench_reports_both_throughputs_and_the_ratio() -> None:
    figures = await bench("--async", "--count", "200", "--workers", "2")
    assert figures["count"] == 200
    assert figures["workers"] == 2
    assert figures["bare_jetstream_per_s"] > 0
    assert figures["computebus_async_per_s"] > 0
    assert figures["async_throughput_ratio"] > 0


async def test_flood_bench_reports_the_victims_latency_alone_and_flooded() -> None:
    figures = await bench("--flood", "--clients", "40", "--samples", "50")
    for phase in ("alone", "flooded", "async_alone", "async_flooded"):
        assert 0 < figures[phase]["p50_ms"] <= figures[phase]["p95_ms"]
    assert figures["p50_ratio"] > 0 and figures["async_p50_ratio"] > 0
    assert figures["clients"] == 40


async def test_async_bench_runs_on_a_local_cluster() -> None:
    figures = await bench("--async", "--cluster", "--count", "200", "--workers", "2")
    assert figures["cluster"] is True and figures["workers"] == 2
    assert figures["computebus_async_per_s"] > 0
    assert figures["async_throughput_ratio"] > 0


async def test_cold_bench_reports_the_whole_and_every_part_for_both_runtimes() -> None:
    figures = await bench("--cold", "--rounds", "3")
    assert figures["rounds"] == 3
    assert set(figures["on_a_spare"]) == {"python", "nodejs"}
    for runtime in ("python", "nodejs"):
        row = figures[runtime]
        for part in ("whole", *PARTS, "bare_spawn_and_first_call"):
            assert 0 < row[part]["p50_ms"] <= row[part]["p99_ms"], (runtime, part)


async def test_scale_bench_reports_every_figure() -> None:
    figures = await bench("--functions", "20", "--samples", "20", "--warm", "6", "--idle-s", "2")
    assert figures["functions"] == 20
    assert figures["list_total"] == 21 and figures["new_worker_functions"] == 21
    assert figures["warm_processes"] >= 6
    for key, value in figures.items():
        if key not in ("warm_after_idle", "spares"):
            assert value > 0, key
    assert figures["warm_after_idle"] >= 0 and figures["spares"] >= 0
