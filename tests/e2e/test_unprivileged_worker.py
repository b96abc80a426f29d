"""The hostile-handler tests again, with the worker running as an unprivileged user (uid 65534)
in a cgroup subtree delegated to it, as ``systemd``'s ``Delegate=yes`` would give one.

Here the sandbox's uid is the worker's own (bubblewrap maps it to 65534 inside its user
namespace). The worker runs from a virtualenv the unprivileged user can read:
``COMPUTEBUS_TEST_UNPRIVILEGED_PYTHON`` names its interpreter (``.ci/run`` makes one).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from bus.embedded import start_embedded_nats
from executor.api.server import run_api
from executor.settings import Settings
from schemas.tokens import ADMIN_TOKEN_FILE
from tests.e2e.test_sandbox_escapes import (
    test_a_handler_cannot_answer_with_a_platform_error,
    test_a_handler_cannot_change_host_kernel_settings,
    test_a_late_frame_never_answers_a_later_caller,
    test_a_result_that_is_not_utf8_is_the_handlers_fault,
    test_a_second_reply_frame_never_answers_the_next_caller,
    test_dangerous_system_calls_are_denied,
    test_host_paths_stay_out_of_command_lines_and_mounts,
    test_one_tenant_cannot_hand_a_key_to_another,
    test_the_workers_open_files_never_reach_a_handler,
    test_threads_a_handler_leaves_behind_get_no_cpu,
)
from tests.helpers import Stack, reachable_dir

__all__ = [  # collected again here, against the unprivileged worker's stack
    "test_a_handler_cannot_answer_with_a_platform_error",
    "test_a_handler_cannot_change_host_kernel_settings",
    "test_a_late_frame_never_answers_a_later_caller",
    "test_a_result_that_is_not_utf8_is_the_handlers_fault",
    "test_a_second_reply_frame_never_answers_the_next_caller",
    "test_dangerous_system_calls_are_denied",
    "test_host_paths_stay_out_of_command_lines_and_mounts",
    "test_one_tenant_cannot_hand_a_key_to_another",
    "test_the_workers_open_files_never_reach_a_handler",
    "test_threads_a_handler_leaves_behind_get_no_cpu",
]

NOBODY = 65534
CGROUP_ROOT = Path("/sys/fs/cgroup")
USED_V1 = {"memory", "pids", "freezer", "cpu", "cpuacct"}


def _worker_python() -> str:
    python = os.environ.get("COMPUTEBUS_TEST_UNPRIVILEGED_PYTHON")
    if os.geteuid() != 0:
        pytest.skip("needs root to start a worker as another user")
    if not python:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must set COMPUTEBUS_TEST_UNPRIVILEGED_PYTHON (see .ci/run)")
        pytest.skip("COMPUTEBUS_TEST_UNPRIVILEGED_PYTHON is not set")
    return python


@contextlib.contextmanager
def delegated_cgroup(name: str) -> Iterator[list[Path]]:
    """A cgroup per controller under this process's own, owned by the unprivileged user."""
    made: list[Path] = []
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, own = line.split(":", 2)
            if controllers and not set(controllers.split(",")) & USED_V1:
                continue  # cpuset, devices, name=systemd...: not the sandbox's
            mount = CGROUP_ROOT / controllers
            if not (mount / "cgroup.procs").exists():
                continue  # v2 mounted beside v1 ("unified"), or a hierarchy not mounted here
            d = mount / own.lstrip("/") / name
            d.mkdir()
            made.append(d)
            for path in [d, *d.iterdir()]:
                os.chown(path, NOBODY, NOBODY)
        yield made
    finally:
        for d in reversed(made):
            for child in sorted(d.glob("**/"), key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    child.rmdir()


@pytest_asyncio.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    python = _worker_python()
    nats = await start_embedded_nats(tmp_path_factory.mktemp("nats-unprivileged"))
    try:
        with (
            reachable_dir() as data_dir,
            delegated_cgroup(f"computebus-test-{os.getpid()}-delegated") as cg,
        ):
            os.chown(data_dir, NOBODY, NOBODY)
            async for stack in _stack_with_worker(python, nats.url, data_dir, cg):
                yield stack
    finally:
        await nats.stop()


async def _stack_with_worker(
    python: str, nats_url: str, data_dir: Path, cgroups: list[Path]
) -> AsyncIterator[Stack]:
    """The API in this process, the worker as the unprivileged user, started in ``cgroups``."""
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "NATS_URL": nats_url,
        "COMPUTEBUS_DATA_DIR": str(data_dir),
        "COMPUTEBUS_LOG_LEVEL": "WARNING",
    }
    # The shell waits until its pid is in the cgroups, then becomes the worker.
    worker = subprocess.Popen(
        ["/bin/sh", "-c", 'read _ && exec "$@"', "sh", python, "-m", "executor.cli", "worker"],
        stdin=subprocess.PIPE,
        env=env,
        cwd=data_dir,
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
    )
    settings = Settings(data_dir=data_dir, port=0, idle_s=60.0, drain_s=5.0)
    stop = asyncio.Event()
    url: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    api = asyncio.create_task(run_api(nats_url, settings, stop, on_ready=url.set_result))
    try:
        assert worker.stdin is not None
        for d in cgroups:
            (d / "cgroup.procs").write_text(str(worker.pid))
        worker.stdin.write(b"go\n")
        worker.stdin.close()
        await _wait_for_workers(await asyncio.wait_for(url, 30), worker)
        token = (data_dir / ADMIN_TOKEN_FILE).read_text().strip()
        yield Stack(api=await url, nats_url=nats_url, settings=settings, token=token)
    finally:
        stop.set()
        await api
        worker.terminate()
        try:
            await asyncio.to_thread(worker.wait, 15)
        except subprocess.TimeoutExpired:
            worker.kill()
            await asyncio.to_thread(worker.wait)


async def _wait_for_workers(api: str, worker: subprocess.Popen[bytes]) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=api, timeout=10) as client:
        for _ in range(300):
            if worker.poll() is not None:
                pytest.fail(f"the unprivileged worker exited with {worker.returncode}")
            ready = (await client.get("/readyz")).json()
            if ready["workers"]:
                return
            await asyncio.sleep(0.1)
    pytest.fail("the unprivileged worker did not become ready")


async def test_the_unprivileged_worker_has_the_strongest_level(stack: Stack) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=stack.api, timeout=10, headers=stack.auth) as client:
        ready = (await client.get("/readyz")).json()
    assert ready["isolation"] == "bwrap+cgroup", ready
    assert any("not root" in gap for gap in ready["isolation_gaps"]), ready
