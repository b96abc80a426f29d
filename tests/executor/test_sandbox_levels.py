"""The weaker isolation levels, forced: what each still holds when bwrap or cgroups are missing."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from executor.instance import HandlerProcess
from executor.launch import launch, launch_plan
from executor.sandbox import Cgroups, Limits, Sandbox
from schemas.handler_protocol import HandlerRequest, request_encoder
from schemas.invocations import HandlerContext
from tests.conftest import living_descendants

HANDLER = r"""
import os, time

def handler(event, context):
    if event == "escape":
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(120)
            os._exit(0)
        time.sleep(60)
    if event == "memory":
        hog = []
        while True:
            hog.append(bytearray(16 * 1024 * 1024))
    return "ok"
"""


def request(event: str) -> bytes:
    context = HandlerContext(
        invocation_id="x",
        collection_topic="t",
        service="000000000",
        revision=1,
        deadline_ms=0,
        memory_mb=128,
    )
    return request_encoder.encode(
        HandlerRequest(event=msgspec.Raw(msgspec.json.encode(event)), context=context)
    )


async def spawn(sandbox: Sandbox, workspace: Path) -> HandlerProcess:
    plan = launch_plan(
        sandbox,
        runtime="python",
        handler_file="index.py",
        export="handler",
        workspace=workspace,
        env_vars=[],
        limits=Limits(128),
    )
    return await launch(sandbox, plan, log_cap=4096, max_reply_bytes=1 << 20)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "index.py").write_text(HANDLER)
    return tmp_path


@pytest.fixture
async def cgroup_only() -> AsyncIterator[Sandbox]:
    cgroups = Cgroups.create(f"computebus-test-{os.getpid()}-{os.urandom(2).hex()}")
    if cgroups is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must have writable cgroups")
        pytest.skip("no writable cgroups here")
    sandbox = Sandbox(None, cgroups)
    yield sandbox
    sandbox.close()


async def test_cgroup_level_kills_a_setsid_escapee(cgroup_only: Sandbox, workspace: Path) -> None:
    assert cgroup_only.level == "cgroup"
    before = living_descendants()
    process = await spawn(cgroup_only, workspace)
    with pytest.raises(TimeoutError):
        await process.invoke(request("escape"), 1.0)
    assert process.cgroup is not None
    await process.kill()
    # The escapee left the session and the process tree; the cgroup still found it.
    assert process.cgroup.pids() == set()
    for _ in range(50):
        if living_descendants() <= before:
            break
        await asyncio.sleep(0.05)
    assert living_descendants() <= before


async def test_cgroup_level_reports_out_of_memory(cgroup_only: Sandbox, workspace: Path) -> None:
    process = await spawn(cgroup_only, workspace)
    try:
        await process.invoke(request("memory"), 20.0)
    except Exception as exc:
        assert type(exc).__name__ == "ProcessGone"
    await process.kill()
    assert process.out_of_memory


async def test_rlimit_level_bounds_python_memory(workspace: Path) -> None:
    sandbox = Sandbox(None, None)
    assert sandbox.level == "rlimit"
    process = await spawn(sandbox, workspace)
    try:
        reply, _ = await process.invoke(request("memory"), 20.0)
        assert reply.error is not None
        assert reply.error.code == "out_of_memory"
        ok, _ = await process.invoke(request("fine"), 5.0)
        assert bytes(ok.result) == b'"ok"'
    finally:
        await process.kill()
