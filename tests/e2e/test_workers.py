"""Scale-out and per-process discipline: a second worker process joins the queue group and each
invocation still runs exactly once; a warm handler process runs one invocation at a time."""

from __future__ import annotations

import asyncio
import itertools
import signal
import sys
from pathlib import Path

import httpx
import msgspec
import nats
from nats.aio.msg import Msg

from schemas.control import TAKEN_AFTER_S, Alive
from schemas.headers import H_TAKEN
from tests.helpers import MakeFunction, Stack, wait_for_workers, workers_ready

NOOP = {"index.py": "def handler(event, context):\n    return 1\n"}
SLOW = {
    "index.py": (
        "import os, time\n\n"
        "TOKEN = os.urandom(8).hex()  # this process's identity\n\n"
        "def handler(event, context):\n"
        "    start = time.time()\n"
        "    time.sleep(0.3)\n"
        "    return {'pid': TOKEN, 'start': start, 'end': time.time()}\n"
    ),
}


async def start_worker(
    http: httpx.AsyncClient, stack: Stack, data_dir: Path
) -> asyncio.subprocess.Process:
    """Another ``computebus worker`` process on the stack's bus, once the API counts it."""
    before = await workers_ready(http)
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "executor.cli",
        "worker",
        "--nats-url",
        stack.nats_url,
        "--data-dir",
        str(data_dir),
        stderr=asyncio.subprocess.DEVNULL,
    )
    await wait_for_workers(http, before + 1)
    return worker


async def test_a_second_worker_shares_the_work_and_each_invocation_runs_once(
    http: httpx.AsyncClient, stack: Stack, make_function: MakeFunction, tmp_path: Path
) -> None:
    fn = await make_function(NOOP, runtime="python")
    before = await workers_ready(http)
    worker = await start_worker(http, stack, tmp_path / "second")
    try:
        assert await workers_ready(http) == before + 1

        calls = 60
        gate = asyncio.Semaphore(8)

        async def call() -> httpx.Response:
            async with gate:
                return await http.post(f"{fn.path}/invoke", json={"payload": None})

        responses = await asyncio.gather(*(call() for _ in range(calls)))
        assert [r.status_code for r in responses] == [200] * calls
        ids = {r.headers["x-invocation-id"] for r in responses}
        assert len(ids) == calls
        listed = await http.get(f"{fn.path}/invocations", params={"limit": 1000})
        records = listed.json()["body"]
        assert records["results_total"] == calls  # one record per invocation, none twice
        assert {r["invocation_id"] for r in records["results"]} == ids
        # Both workers ran some.
        assert len({r["worker"] for r in records["results"]}) == 2
    finally:
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.wait(), 30) == 0
    assert await workers_ready(http) == before


async def test_a_warm_process_runs_one_invocation_at_a_time(
    http: httpx.AsyncClient, stack: Stack, make_function: MakeFunction
) -> None:
    fn = await make_function(SLOW, runtime="python")
    calls = 2 * stack.settings.pool_per_revision
    responses = await asyncio.gather(
        *(http.post(f"{fn.path}/invoke", json={"payload": None}) for _ in range(calls))
    )
    assert [r.status_code for r in responses] == [200] * calls
    runs = [r.json()["body"] for r in responses]
    by_pid: dict[int, list[tuple[float, float]]] = {}
    for run in runs:
        by_pid.setdefault(run["pid"], []).append((run["start"], run["end"]))
    # Concurrent calls spread over the pool, never beyond it...
    assert 1 < len(by_pid) <= stack.settings.pool_per_revision
    # ...and within one process they never overlap.
    for spans in by_pid.values():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end


async def test_a_full_worker_hands_invocations_to_one_with_room(
    http: httpx.AsyncClient, stack: Stack, make_function: MakeFunction, tmp_path: Path
) -> None:
    """With a function's max_concurrency reached on one worker, a call that lands there runs on
    the other instead of being refused: no caller hears ``overloaded`` while a worker has room."""
    fn = await make_function(SLOW, runtime="python", limits={"max_concurrency": 3})
    worker = await start_worker(http, stack, tmp_path / "second")
    try:
        for _ in range(3):  # both warm, so that a hand-over costs no cold start
            await asyncio.gather(
                *(http.post(f"{fn.path}/invoke", json={"payload": i}) for i in range(6))
            )
        responses = await asyncio.gather(
            *(http.post(f"{fn.path}/invoke", json={"payload": i}) for i in range(6))
        )
        assert [r.status_code for r in responses] == [200] * 6, [r.text for r in responses]
        ids = {r.headers["x-invocation-id"] for r in responses}
        listed = await http.get(f"{fn.path}/invocations", params={"limit": 1000})
        ran_by = {r["invocation_id"]: r["worker"] for r in listed.json()["body"]["results"]}
        assert ids <= set(ran_by)
        assert len({ran_by[i] for i in ids}) == 2  # three each: the limit on each worker
    finally:
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.wait(), 30) == 0


HANG = {"index.py": "import time\ndef handler(event, context):\n    time.sleep(3600)\n"}


async def test_callers_of_a_killed_worker_hear_worker_lost_within_seconds(
    http: httpx.AsyncClient, stack: Stack, make_function: MakeFunction, tmp_path: Path
) -> None:
    fn = await make_function(HANG, runtime="python", timeout=8000, limits={"max_concurrency": 3})
    worker = await start_worker(http, stack, tmp_path / "doomed")
    try:
        loop = asyncio.get_running_loop()

        async def call() -> tuple[int, str, float]:
            answer = await http.post(f"{fn.path}/invoke", json={"payload": None})
            return answer.status_code, answer.json()["code"], loop.time()

        calls = [asyncio.create_task(call()) for _ in range(6)]  # three on each worker
        await asyncio.sleep(1.5)
        killed = loop.time()
        worker.kill()
        results = await asyncio.gather(*calls)
    finally:
        if worker.returncode is None:
            worker.kill()
        await worker.wait()
    lost = [r for r in results if r[1] == "worker_lost"]
    assert len(lost) == 3, results
    assert all(status == 503 and at - killed < 3.0 for status, _, at in lost), results
    assert sorted(code for _, code, _ in results if code != "worker_lost") == ["timeout"] * 3


SLEEPS_1S = {"index.py": "import time\ndef handler(event, context):\n    time.sleep(1)\n"}


async def test_a_worker_says_it_took_a_call_only_once_the_call_has_run_a_while(
    stack: Stack, make_function: MakeFunction
) -> None:
    quick = await make_function(NOOP, runtime="python")
    slow = await make_function(SLEEPS_1S, runtime="python", timeout=5000)
    nc = await nats.connect(stack.nats_url)
    try:
        loop = asyncio.get_running_loop()
        notices: list[tuple[float, bytes]] = []

        async def noted(msg: Msg) -> None:
            notices.append((loop.time(), msg.data))

        where = nc.new_inbox()
        await nc.subscribe(where, cb=noted)
        await nc.request(quick.subject, b"null", headers={H_TAKEN: where}, timeout=30)  # warm
        answered = await nc.request(quick.subject, b"null", headers={H_TAKEN: where}, timeout=30)
        assert answered.data == b"1"
        await asyncio.sleep(TAKEN_AFTER_S + 0.3)
        assert notices == []  # answered within TAKEN_AFTER_S: the answer says it for free

        await nc.request(slow.subject, b"null", headers={H_TAKEN: where}, timeout=30)  # warm
        notices.clear()
        sent = loop.time()
        await nc.request(slow.subject, b"null", headers={H_TAKEN: where}, timeout=30)
        assert len(notices) == 1, notices
        at, data = notices[0]
        assert TAKEN_AFTER_S - 0.05 <= at - sent < 1.0
        assert msgspec.json.decode(data, type=Alive).worker  # which worker to watch
    finally:
        await nc.close()
