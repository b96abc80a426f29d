"""Async invocations under faults, each test on its own nats-server with worker processes:
the server killed and restarted mid-submission, a worker killed mid-run, a worker stopped under
load. Every test counts executions (through the counting handler) and records, and asserts that
no accepted invocation is lost and none is recorded twice."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from nats.aio.msg import Msg

from bus.connect import connect
from bus.embedded import EmbeddedNats, start_embedded_nats
from bus.monitor import MonitorStore
from bus.workers import ping_workers
from executor.api.server import run_api
from executor.settings import Settings
from schemas.tokens import ADMIN_TOKEN_FILE
from tests.helpers import COUNTING_HANDLER, ExecutionCounter, function_body

ACK_WAIT_S = 2.0


@dataclasses.dataclass
class Cluster:
    tmp: Path
    server: EmbeddedNats
    http: httpx.AsyncClient
    workers: list[asyncio.subprocess.Process]
    closers: list[Callable[[], Awaitable[None]]] = dataclasses.field(default_factory=list)

    async def start_worker(self, **env: str) -> asyncio.subprocess.Process:
        n = len(self.workers)
        log = (self.tmp / f"worker-{n}.log").open("ab")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "executor.cli",
            "worker",
            env={
                **os.environ,
                "NATS_URL": self.server.url,
                "COMPUTEBUS_DATA_DIR": str(self.tmp / f"worker-{n}"),
                "COMPUTEBUS_ASYNC_ACK_WAIT_S": str(ACK_WAIT_S),
                **env,
            },
            stdout=log,
            stderr=log,
        )
        log.close()
        self.workers.append(process)
        return process

    async def wait_for_workers(self, count: int) -> None:
        nc = await connect(self.server.url, name="test-ping")
        try:
            deadline = time.monotonic() + 60
            while len(await ping_workers(nc)) < count:
                assert time.monotonic() < deadline, "workers did not start"
        finally:
            await nc.close()

    async def restart_server(self) -> None:
        """SIGKILL the nats-server and start it again on the same port and store."""
        self.server.process.send_signal(signal.SIGKILL)
        await self.server.process.wait()
        self.server = await start_embedded_nats(self.server.data_dir, port=self.server.port)

    async def watch_results(self, ct: str, ft: str) -> Counter[str]:
        """Count the distinct final records each invocation's result events announce from now
        on (the client reconnects across a server restart, and the workers' events buffered
        meanwhile still arrive). An event the server may have lost is sent again as it was
        (bus/result_events.py: at least once), so only a different record counts again."""
        seen: Counter[str] = Counter()
        heard: set[bytes] = set()

        async def on_result(msg: Msg) -> None:
            if msg.data not in heard:
                heard.add(msg.data)
                seen[msgspec.json.decode(msg.data)["invocation_id"]] += 1

        nc = await connect(self.server.url, name="test-results")
        self.closers.append(nc.close)
        await nc.subscribe(f"ms.compute.{ct}.function.{ft}.result.>", cb=on_result)
        await nc.flush()
        return seen

    async def records(self, ct: str, ft: str) -> list[dict[str, Any]]:
        nc = await connect(self.server.url, name="test-records")
        try:
            monitor = await MonitorStore.open(nc)
            page = await monitor.list(ct, ft, limit=100_000)
            assert page.complete
            return [msgspec.to_builtins(r) for r in page.items]
        finally:
            await nc.close()


@contextlib.asynccontextmanager
async def cluster(tmp_path: Path, workers: int) -> AsyncIterator[Cluster]:
    server = await start_embedded_nats(tmp_path / "nats")
    settings = Settings(data_dir=tmp_path / "api", port=0, allow_network=True, drain_s=2.0)
    stop = asyncio.Event()
    url: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    api = asyncio.create_task(run_api(server.url, settings, stop, on_ready=url.set_result))
    made = Cluster(tmp_path, server, httpx.AsyncClient(timeout=30), [])
    try:
        made.http.base_url = httpx.URL(await asyncio.wait_for(url, 30))
        token = (settings.data_dir / ADMIN_TOKEN_FILE).read_text().strip()
        made.http.headers["Authorization"] = f"Bearer {token}"
        for _ in range(workers):
            await made.start_worker()
        await made.wait_for_workers(workers)
        yield made
    finally:
        for process in made.workers:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in made.workers:
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
        for close in made.closers:
            await close()
        await made.http.aclose()
        stop.set()
        await asyncio.wait_for(api, 30)
        await made.server.stop()


async def create_counting(
    made: Cluster, counter: ExecutionCounter, max_attempts: int = 3, **env: str
) -> tuple[str, str]:
    body = function_body(
        {"index.py": COUNTING_HANDLER},
        runtime="python",
        compute_asset={"network": True, "env_vars": counter.env(**env)},
        async_config={"max_attempts": max_attempts, "backoff_ms": 100},
        store_payload=False,
    )
    response = await made.http.post("/compute/functions", json=body)
    assert response.status_code == 201, response.text
    return body["compute_asset"]["collection_topic"], response.json()["body"]["compute_asset"][
        "service"
    ]


async def submit_all(
    made: Cluster, ct: str, ft: str, keys: list[str], deadline_s: float
) -> list[str]:
    """Submit one Async invocation per key, retrying each (same key) until it is accepted."""
    accepted: list[str] = []
    todo: asyncio.Queue[str] = asyncio.Queue()
    for key in keys:
        todo.put_nowait(key)
    stop_at = time.monotonic() + deadline_s

    async def submitter() -> None:
        while not todo.empty():
            key = todo.get_nowait()
            while True:
                assert time.monotonic() < stop_at, f"{key} was never accepted"
                try:
                    response = await made.http.post(
                        f"/compute/functions/{ct}/{ft}/invoke",
                        json={"payload": {"key": key}, "invocation_type": "Async"},
                        headers={"Idempotency-Key": key},
                    )
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
                    continue
                if response.status_code == 202:
                    accepted.append(response.json()["body"]["invocation_id"])
                    break
                assert response.status_code in (429, 503, 504), response.text
                await asyncio.sleep(0.1)

    await asyncio.gather(*(submitter() for _ in range(16)))
    return accepted


async def wait_all_finished(
    made: Cluster, ct: str, ft: str, ids: set[str], timeout: float
) -> list[dict[str, Any]]:
    stop_at = time.monotonic() + timeout
    while True:
        try:
            records = await made.records(ct, ft)
        except Exception:  # the server may still be recovering
            records = []
        finished = [r for r in records if r["status"] in ("succeeded", "failed")]
        if {r["invocation_id"] for r in finished} >= ids:
            return records
        assert time.monotonic() < stop_at, (
            f"{len(ids) - len(finished)} of {len(ids)} invocations unfinished"
        )
        await asyncio.sleep(0.5)


async def until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    stop_at = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < stop_at, f"no {what} within {timeout:g} s"
        await asyncio.sleep(0.05)


def assert_each_succeeded_once(
    records: list[dict[str, Any]], ids: set[str], counter: ExecutionCounter, events: Counter[str]
) -> None:
    assert {r["invocation_id"] for r in records} == ids, "records missing, or never accepted"
    # The stream keeps one record per invocation, so count the final writes by their events:
    # each final record is announced once, right after it is written.
    twice = [i for i, n in events.items() if n > 1]
    assert twice == [], f"{len(twice)} invocations were finished (recorded) more than once"
    failed = [r for r in records if r["status"] != "succeeded"]
    assert failed == []
    never_ran = ids - set(counter.runs)
    assert never_ran == set(), f"{len(never_ran)} succeeded without running"
    # At least once: a run whose record was lost with the server may run again; bounded.
    assert max(counter.runs[i] for i in ids) <= 3


@pytest.mark.timeout(300)
async def test_no_accepted_invocation_is_lost_when_the_nats_server_is_killed(
    tmp_path: Path, counter: ExecutionCounter
) -> None:
    async with cluster(tmp_path, workers=2) as made:
        ct, ft = await create_counting(made, counter)
        events = await made.watch_results(ct, ft)
        keys = [f"k{i}" for i in range(2000)]
        submitting = asyncio.create_task(submit_all(made, ct, ft, keys, deadline_s=180))
        await until(lambda: len(counter.runs) >= 400 or submitting.done(), "400 runs")
        await made.restart_server()
        accepted = await submitting
        ids = set(accepted)
        assert len(ids) == len(keys)
        records = await wait_all_finished(made, ct, ft, ids, timeout=120)
        assert_each_succeeded_once(records, ids, counter, events)
        extra = sum(counter.runs.values()) - len(ids)
        print(f"2000 accepted across a nats-server SIGKILL: {extra} ran more than once")


@pytest.mark.timeout(300)
async def test_a_killed_worker_s_invocations_complete_on_the_other(
    tmp_path: Path, counter: ExecutionCounter
) -> None:
    async with cluster(tmp_path, workers=2) as made:
        ct, ft = await create_counting(made, counter, SLEEP_S="0.2")
        events = await made.watch_results(ct, ft)
        keys = [f"w{i}" for i in range(200)]
        accepted = await submit_all(made, ct, ft, keys, deadline_s=60)
        victim = made.workers[0]
        await until(lambda: len(counter.runs) >= 20, "20 runs before the kill")
        victim.send_signal(signal.SIGKILL)
        await victim.wait()
        ids = set(accepted)
        records = await wait_all_finished(made, ct, ft, ids, timeout=120)
        assert_each_succeeded_once(records, ids, counter, events)
        retried = [r for r in records if r["attempts"] > 1]
        assert retried, "the killed worker held nothing: the test did not test a loss"


@pytest.mark.timeout(300)
async def test_sigterm_under_load_hands_work_back_and_loses_none(
    tmp_path: Path, counter: ExecutionCounter
) -> None:
    async with cluster(tmp_path, workers=1) as made:
        await made.start_worker(COMPUTEBUS_DRAIN_S="1")  # this one is stopped under load
        await made.wait_for_workers(2)
        ct, ft = await create_counting(made, counter, SLEEP_S="0.3")
        events = await made.watch_results(ct, ft)
        keys = [f"t{i}" for i in range(300)]
        accepted = await submit_all(made, ct, ft, keys, deadline_s=60)
        stopped = made.workers[1]
        await until(lambda: len(counter.runs) >= 30, "30 runs before SIGTERM")
        stopped.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(stopped.wait(), 30) == 0
        ids = set(accepted)
        records = await wait_all_finished(made, ct, ft, ids, timeout=120)
        assert_each_succeeded_once(records, ids, counter, events)
        stop_at = time.monotonic() + 10  # the bus stayed up: every outcome was announced
        while set(events) != ids and time.monotonic() < stop_at:
            await asyncio.sleep(0.1)
        assert set(events) == ids


@pytest.mark.timeout(300)
async def test_a_run_cut_by_the_drain_deadline_goes_to_another_worker_without_using_an_attempt(
    tmp_path: Path, counter: ExecutionCounter
) -> None:
    async with cluster(tmp_path, workers=0) as made:
        first = await made.start_worker(COMPUTEBUS_DRAIN_S="0.5")
        await made.wait_for_workers(1)
        # Long enough to outlast starting the second worker on a loaded machine.
        ct, ft = await create_counting(made, counter, max_attempts=1, SLEEP_S="8")
        [invocation_id] = await submit_all(made, ct, ft, ["only"], deadline_s=30)
        await until(lambda: counter.runs.get(invocation_id) == 1, "the first run")
        await made.start_worker()
        await made.wait_for_workers(2)
        first.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(first.wait(), 30) == 0
        [record] = await wait_all_finished(made, ct, ft, {invocation_id}, timeout=60)
        assert record["status"] == "succeeded", record
        assert record["attempts"] == 1
        assert counter.runs[invocation_id] == 2
