"""The weaker isolation levels, forced: what each still holds when bwrap or cgroups are missing."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest

from executor.runtime.confinement import FREEZE_AFTER_S
from executor.runtime.launch import open_sandbox
from executor.runtime.process import ProcessGone
from executor.runtime.sandbox import Sandbox, SandboxUnusable
from executor.settings import Settings
from tests.e2e.attacks import PY_ATTACKS
from tests.helpers import (
    handler_request,
    living_descendants,
    reachable_dir,
    spawn_python_handler,
    world_python,
)


@pytest.fixture
def workspace() -> Iterator[Path]:
    with reachable_dir() as path:
        (path / "index.py").write_text(PY_ATTACKS)
        yield path


def forced(level: str, data_dir: Path) -> Sandbox:
    """The sandbox ``serve`` would use with COMPUTEBUS_ISOLATION=level (checked at start)."""
    settings = Settings(isolation=level, python=world_python(), data_dir=data_dir)
    sandbox, _ = open_sandbox(settings, f"computebus-test-{os.getpid()}-{os.urandom(2).hex()}")
    return sandbox


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


async def test_a_capped_level_says_so_and_still_drops_the_uid(workspace: Path) -> None:
    sandbox = forced("bwrap", workspace)
    try:
        if sandbox.bwrap is None:
            pytest.skip("no working bubblewrap here")
        assert sandbox.level == "bwrap"
        assert sandbox.cgroups is None
        assert any("capped at bwrap" in gap for gap in sandbox.gaps), sandbox.gaps
        process = await spawn_python_handler(sandbox, workspace)
        try:
            reply, _ = await process.invoke(handler_request({"op": "whoami"}), 10.0)
            me = msgspec.json.decode(bytes(reply.result))
            assert me["uid"] != 0 and int(me["caps"], 16) == 0, me
        finally:
            await process.kill()
    finally:
        sandbox.close()


async def test_without_a_freezer_cpu_used_while_idle_retires_the_process(
    cgroup_only: Sandbox, workspace: Path
) -> None:
    assert cgroup_only.cgroups is not None
    features = cgroup_only.cgroups.features
    if not features.cpu_usage:
        pytest.skip("no CPU accounting in these cgroups")
    cgroup_only.cgroups.features = dataclasses.replace(features, freeze=False)
    process = await spawn_python_handler(cgroup_only, workspace)
    try:
        await process.invoke(handler_request({"op": "ok"}), 10.0)
        assert process.well_behaved  # idle, and nothing of it runs
        await process.invoke(handler_request({"op": "threads_then_return"}), 10.0)
        await asyncio.sleep(0.5)
        assert not process.well_behaved  # its threads burned CPU with no invocation
    finally:
        await process.kill()


async def test_with_a_freezer_what_a_handler_leaves_running_stops_once_it_is_idle(
    cgroup_only: Sandbox, workspace: Path
) -> None:
    assert cgroup_only.cgroups is not None
    features = cgroup_only.cgroups.features
    if not (features.freeze and features.cpu_usage):
        pytest.skip("no freezer or no CPU accounting in these cgroups")
    process = await spawn_python_handler(cgroup_only, workspace)
    cgroup = process.confinement.cgroup
    assert cgroup is not None
    try:
        await process.invoke(handler_request({"op": "threads_then_return"}), 10.0)
        await asyncio.sleep(FREEZE_AFTER_S + 0.2)
        frozen_at = cgroup.cpu_usage_ns()
        await asyncio.sleep(0.5)
        assert frozen_at is not None and cgroup.cpu_usage_ns() == frozen_at  # no CPU at all
        assert process.well_behaved
        reply, _ = await process.invoke(handler_request({"op": "ok"}), 10.0)  # thawed for it
        assert reply.ok
    finally:
        await process.kill()


async def test_a_data_dir_the_sandbox_cannot_enter_unpacks_bundles_where_it_can(
    tmp_path: Path,
) -> None:
    if os.geteuid() != 0:
        pytest.skip("only a root worker gives its sandboxes another uid")
    private = tmp_path / "private"  # pytest's tmp_path lives under a directory only root enters
    private.mkdir()
    settings = Settings(isolation="cgroup", python=world_python(), data_dir=private)
    sandbox, workspaces = open_sandbox(settings, f"computebus-test-{os.getpid()}")
    try:
        assert not workspaces.is_relative_to(private)  # the start-up check passed from there
    finally:
        sandbox.close()
        shutil.rmtree(workspaces)


async def test_an_interpreter_the_sandbox_cannot_run_stops_the_worker_at_start(
    tmp_path: Path,
) -> None:
    if os.geteuid() != 0:
        pytest.skip("only a root worker gives its sandboxes another uid")
    hidden = tmp_path / "hidden" / "python3"  # under a directory only root enters
    hidden.parent.mkdir()
    shutil.copy(os.path.realpath(sys.executable), hidden)
    with reachable_dir() as data_dir, pytest.raises(SandboxUnusable) as refused:
        open_sandbox(Settings(isolation="cgroup", python=str(hidden), data_dir=data_dir), "t")
    message = str(refused.value)
    assert "COMPUTEBUS_PYTHON" in message, message
    assert "COMPUTEBUS_ISOLATION=auto" in message  # bubblewrap is only capped away
