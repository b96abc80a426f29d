"""Spare handler processes, with real workers at the strongest level and at ``rlimit``: a new
function's first call runs on a process that was started before the function existed, a spare
serves one function only, one function's env_vars never reach another's process, spares are gone
once the worker stops, and COMPUTEBUS_SPARES=0 starts every process on demand."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from bus.embedded import start_embedded_nats
from executor.api.server import run_api
from executor.settings import Settings
from executor.worker.start import run_worker
from tests.helpers import (
    admin_token,
    function_body,
    living_descendants,
    reachable_dir,
    world_python,
)

# What the process it runs in is: its age (from /proc, seconds), an identity no other live
# process shares (its pid namespace and pid), what it sees of the function env_vars, whether it
# can write into its workspace, and what is there.
PROBE = {
    "index.py": (
        "import os\n"
        "def handler(event, context):\n"
        "    ticks = int(open('/proc/self/stat').read().rsplit(')', 1)[1].split()[19])\n"
        "    uptime = float(open('/proc/uptime').read().split()[0])\n"
        "    age = uptime - ticks / os.sysconf('SC_CLK_TCK')\n"
        "    me = os.readlink('/proc/self/ns/pid') + ':' + str(os.getpid()) + ':' + str(ticks)\n"
        "    written = []\n"
        "    for name, mode in (('index.py', 'a'), ('new.txt', 'w')):\n"
        "        try:\n"
        "            open(name, mode).close()\n"
        "            written.append(name)\n"
        "        except OSError:\n"
        "            pass\n"
        "    return {'age': age, 'me': me, 'secret': os.environ.get('SECRET'),\n"
        "            'environment_file': os.path.exists('/opt/environment'),\n"
        "            'written': written, 'files': sorted(os.listdir('.')),\n"
        "            'nested': open('lib/data.txt').read()}\n"
    ),
    "lib/data.txt": "from a subdirectory",
}

Invoke = Callable[..., Awaitable[tuple[dict[str, Any], float]]]
# What a test sees of its stack: the first call of a new function, the processes before the
# worker started, and the workspaces' root (where the spares' own directories are).
Stack = tuple[Invoke, set[int], Path]


@asynccontextmanager
async def _stack(isolation: str, spares: int) -> AsyncIterator[Stack]:
    with reachable_dir() as data_dir:
        nats = await start_embedded_nats(data_dir / "nats")
        settings = Settings(
            data_dir=data_dir / "cb",
            port=0,
            isolation=isolation,
            spares=spares,
            python=world_python() if isolation == "rlimit" else None,
            drain_s=5.0,
        )
        before = living_descendants()
        stop = asyncio.Event()
        ready = asyncio.Event()
        url: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        worker = asyncio.create_task(run_worker(nats.url, settings, stop, on_ready=ready.set))
        api = asyncio.create_task(run_api(nats.url, settings, stop, on_ready=url.set_result))
        try:
            await asyncio.wait_for(ready.wait(), 30)
            token = await admin_token(nats.url, settings.data_dir)
            auth = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=await url, timeout=60, headers=auth) as http:

                async def create_and_call(env_vars: list[str]) -> tuple[dict[str, Any], float]:
                    """The first call's answer, and how long create plus call took (s)."""
                    env = {"env_vars": env_vars}
                    body = function_body(PROBE, runtime="python", compute_asset=env)
                    t0 = time.monotonic()
                    made = await http.post("/compute/functions", json=body)
                    assert made.status_code == 201, made.text
                    ft = made.json()["body"]["compute_asset"]["service"]
                    path = f"/compute/functions/tests/{ft}/invoke"
                    answer = await http.post(path, json={"payload": None})
                    assert answer.status_code == 200, answer.text
                    return answer.json()["body"], time.monotonic() - t0

                await asyncio.sleep(1.0)  # the spares start
                yield create_and_call, before, settings.data_dir / "workspaces"
        finally:
            stop.set()
            await asyncio.gather(worker, api)
            await nats.stop()


@pytest.fixture(params=["auto", "rlimit"])
def isolation(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_a_new_functions_first_call_runs_on_a_spare_used_once(isolation: str) -> None:
    async with _stack(isolation, spares=1) as (invoke, before, workspaces):
        first, took = await invoke(["SECRET=first-one"])
        assert first["age"] > took, (first, took)  # it was running before the create
        assert first["secret"] == "first-one" and first["environment_file"] is False
        assert first["written"] == [] and first["files"] == ["index.py", "lib"]  # read-only
        assert first["nested"] == "from a subdirectory"
        # Under bubblewrap each spare has a directory of its own; without it, none.
        assert bool(list(workspaces.glob(".spares-*/*"))) == (isolation != "rlimit")
        await asyncio.sleep(1.5)  # the taken spare is replaced
        second, took = await invoke([])
        assert second["age"] > took, (second, took)
        assert second["me"] != first["me"]  # another process: a spare serves one function
        assert second["secret"] is None  # and nothing of the first function's env
    assert living_descendants() - before == set()  # spares and pools are gone with the worker
    assert list(workspaces.glob(".spares-*")) == []  # and so are their directories


async def test_without_spares_every_first_process_starts_on_demand(isolation: str) -> None:
    async with _stack(isolation, spares=0) as (invoke, before, workspaces):
        first, took = await invoke(["SECRET=mine"])
        assert first["age"] < took, (first, took)  # started for this function
        assert first["secret"] == "mine"
        assert list(workspaces.glob(".spares-*")) == []
        assert first["written"] == [] and first["files"] == ["index.py", "lib"]
    assert living_descendants() - before == set()
