"""The weaker isolation levels, forced: what each still holds when bwrap or cgroups are missing."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from executor.instance import ProcessGone
from executor.launch import open_sandbox
from executor.sandbox import Sandbox
from executor.settings import Settings
from tests.conftest import (
    handler_request,
    living_descendants,
    reachable_dir,
    spawn_python_handler,
    world_python,
)
from tests.executor.attacks import PY_ATTACKS


@pytest.fixture
def workspace() -> Iterator[Path]:
    with reachable_dir() as path:
        (path / "index.py").write_text(PY_ATTACKS)
        yield path


def forced(level: str, workspaces: Path) -> Sandbox:
    """The sandbox ``serve`` would use with COMPUTEBUS_ISOLATION=level (checked at start)."""
    settings = Settings(isolation=level, python=world_python())
    return open_sandbox(
        settings, f"computebus-test-{os.getpid()}-{os.urandom(2).hex()}", workspaces
    )


@pytest.fixture
async def cgroup_only(workspace: Path) -> AsyncIterator[Sandbox]:
    sandbox = forced("cgroup", workspace)
    if sandbox.cgroups is None:
        sandbox.close()
        if os.environ.get("CI") == "true":
            pytest.fail("CI must have writable cgroups")
        pytest.skip("no writable cgroups here")
    yield sandbox
    sandbox.close()


async def test_cgroup_level_kills_a_setsid_escapee(cgroup_only: Sandbox, workspace: Path) -> None:
    assert cgroup_only.level == "cgroup"
    before = living_descendants()
    process = await spawn_python_handler(cgroup_only, workspace, memory_mb=128)
    with pytest.raises(TimeoutError):
        await process.invoke(handler_request({"op": "escape"}), 1.0)
    cgroup = process.confinement.cgroup
    assert cgroup is not None
    await process.kill()
    # The escapee left the session and the process tree; the cgroup still found it.
    assert cgroup.pids() == set()
    for _ in range(50):
        if living_descendants() <= before:
            break
        await asyncio.sleep(0.05)
    assert living_descendants() <= before


async def test_cgroup_level_reports_out_of_memory(cgroup_only: Sandbox, workspace: Path) -> None:
    process = await spawn_python_handler(cgroup_only, workspace, memory_mb=128)
    with pytest.raises(ProcessGone):  # killed by the kernel at the cgroup's limit
        await process.invoke(handler_request({"op": "memory"}, memory_mb=128), 20.0)
    await process.kill()
    assert process.out_of_memory


async def test_rlimit_level_bounds_python_memory(workspace: Path) -> None:
    sandbox = forced("rlimit", workspace)
    assert sandbox.level == "rlimit"
    process = await spawn_python_handler(sandbox, workspace, memory_mb=128)
    try:
        reply, _ = await process.invoke(handler_request({"op": "memory"}, memory_mb=128), 20.0)
        assert reply.error is not None
        assert reply.error.code == "out_of_memory"
        ok, _ = await process.invoke(handler_request({"op": "ok"}), 5.0)
        assert bytes(ok.result) == b'"ok"'
    finally:
        await process.kill()
        sandbox.close()
