"""The warm pool on its own, with real python handler processes."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import msgspec
import pytest

from executor.runtime.pool import InstancePool, Spawner
from executor.runtime.process import HandlerProcess
from executor.runtime.sandbox import Sandbox
from schemas.errors import Overloaded
from tests.helpers import handler_request, spawn_python_handler

PID_HANDLER = "import os\ndef handler(event, context):\n    return os.getpid()\n"


def spawner(sandbox: Sandbox, tmp_path: Path, name: str) -> Spawner:
    workspace = tmp_path / name
    workspace.mkdir()
    (workspace / "index.py").write_text(PID_HANDLER)

    async def spawn() -> HandlerProcess:
        # Bare processes (no sandbox): their pids are real, so reuse can be told by pid.
        return await spawn_python_handler(sandbox, workspace)

    return spawn


async def pid_from(pool: InstancePool, key: tuple[str, str, int], spawn: Spawner) -> int:
    revision_pool = pool.for_revision(key, spawn)
    process = await revision_pool.acquire(10)
    try:
        reply, _ = await process.invoke(handler_request(), 10)
    finally:
        await revision_pool.release(process)
    pid: int = msgspec.json.decode(bytes(reply.result))
    return pid


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_a_process_is_reused_within_a_revision_and_never_across(
    bare_sandbox: Sandbox, tmp_path: Path
) -> None:
    pool = InstancePool(max_per_revision=2, max_waiters=8, idle_s=60, max_processes=16)
    try:
        rev1, rev2 = ("c", "000000001", 1), ("c", "000000001", 2)
        spawn1, spawn2 = (
            spawner(bare_sandbox, tmp_path, "r1"),
            spawner(bare_sandbox, tmp_path, "r2"),
        )
        first = await pid_from(pool, rev1, spawn1)
        assert await pid_from(pool, rev1, spawn1) == first
        assert await pid_from(pool, rev2, spawn2) != first
    finally:
        await pool.close()
    assert gone(first)


async def test_idle_processes_are_stopped_after_the_idle_time(
    bare_sandbox: Sandbox, tmp_path: Path
) -> None:
    pool = InstancePool(max_per_revision=2, max_waiters=8, idle_s=0.4, max_processes=16)
    pool.start()
    try:
        pid = await pid_from(pool, ("c", "000000002", 1), spawner(bare_sandbox, tmp_path, "idle"))
        for _ in range(60):
            if gone(pid):
                break
            await asyncio.sleep(0.1)
        assert gone(pid)
    finally:
        await pool.close()


async def test_at_most_max_per_revision_processes_run_at_once(
    bare_sandbox: Sandbox, tmp_path: Path
) -> None:
    pool = InstancePool(max_per_revision=2, max_waiters=8, idle_s=60, max_processes=16)
    try:
        key = ("c", "000000003", 1)
        spawn = spawner(bare_sandbox, tmp_path, "cap")
        pids = await asyncio.gather(*(pid_from(pool, key, spawn) for _ in range(10)))
        assert 1 <= len(set(pids)) <= 2
    finally:
        await pool.close()


async def test_the_worker_wide_process_limit_takes_idle_ones_then_refuses(
    bare_sandbox: Sandbox, tmp_path: Path
) -> None:
    pool = InstancePool(max_per_revision=2, max_waiters=8, idle_s=60, max_processes=2)
    try:
        a, b, c = (("c", "000000004", n) for n in (1, 2, 3))
        idle_a = await pid_from(pool, a, spawner(bare_sandbox, tmp_path, "a"))  # stays idle
        spawn_b = spawner(bare_sandbox, tmp_path, "b")
        first = await pool.for_revision(b, spawn_b).acquire(10)
        second = await pool.for_revision(b, spawn_b).acquire(10)  # takes a's idle place
        for _ in range(50):
            if gone(idle_a):
                break
            await asyncio.sleep(0.02)
        assert gone(idle_a)
        with pytest.raises(Overloaded):  # both in use, none idle: no room for a third
            await pool.for_revision(c, spawner(bare_sandbox, tmp_path, "c")).acquire(10)
        for process in (first, second):
            await pool.for_revision(b, spawn_b).release(process)
    finally:
        await pool.close()
