"""computebus on a real three-node cluster: every store is replicated, work spreads over the
workers through either API, and nothing accepted is lost when a server or a worker dies."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import uuid
from collections import Counter
from pathlib import Path

import httpx
from nats.aio.msg import Msg
from nats.js.api import StreamConfig

from bus import subjects
from bus.connect import connect
from tests.cluster.conftest import ACK_WAIT_S, Cluster
from tests.cluster.helpers import make, records, settled
from tests.helpers import descendants, function_body, wait_for_workers, workers_ready

ECHO = {"index.js": "exports.handler = async (e) => ({ got: e });\n"}
SLEEPY = {
    "index.py": (
        "import time\ndef handler(event, context):\n    time.sleep(event)\n    return event\n"
    )
}


async def test_every_store_has_three_replicas(
    cluster: Cluster, apis: list[httpx.AsyncClient]
) -> None:
    path = await make(apis[0], ECHO)
    assert (await apis[1].post(f"{path}/invoke", json={"payload": 1})).status_code == 200
    queued = await apis[1].post(f"{path}/invoke", json={"payload": 2, "invocation_type": "Async"})
    assert queued.status_code == 202
    nc = await connect(cluster.url, name="test-replicas")
    try:
        streams = {
            s.config.name: s.config.num_replicas for s in await nc.jetstream().streams_info()
        }
    finally:
        await nc.close()
    ct = path.split("/")[3]
    for name in (
        f"KV_{subjects.FUNCTIONS_BUCKET}",
        f"KV_{subjects.TOKENS_BUCKET}",
        f"KV_{subjects.INTERNAL_BUCKET}",
        f"OBJ_{subjects.BUNDLES_BUCKET}",
        subjects.ASYNC_STREAM,
        subjects.monitor_stream(ct),
        subjects.dead_letter_stream(ct),
    ):
        assert streams.get(name) == 3, (name, streams)


async def test_a_stream_made_with_one_replica_is_brought_to_three(
    cluster: Cluster, apis: list[httpx.AsyncClient]
) -> None:
    ct = f"cl-{uuid.uuid4().hex[:8]}"
    nc = await connect(cluster.url, name="test-r1")
    try:
        js = nc.jetstream()
        await js.add_stream(
            StreamConfig(
                name=subjects.monitor_stream(ct),
                subjects=[subjects.monitor_filter(ct)],
                num_replicas=1,
            )
        )
        created = await apis[0].post("/compute/functions", json=function_body(ECHO, collection=ct))
        assert created.status_code == 201, created.text
        assert (await js.stream_info(subjects.monitor_stream(ct))).config.num_replicas == 3
    finally:
        await nc.close()


async def test_work_spreads_over_both_workers_through_either_api(
    cluster: Cluster, apis: list[httpx.AsyncClient]
) -> None:
    path = await make(apis[0], ECHO)
    sync = await asyncio.gather(
        *(apis[i % 2].post(f"{path}/invoke", json={"payload": i}) for i in range(40))
    )
    assert [r.status_code for r in sync] == [200] * 40
    queued = await asyncio.gather(
        *(
            apis[i % 2].post(f"{path}/invoke", json={"payload": i, "invocation_type": "Async"})
            for i in range(40)
        )
    )
    assert [r.status_code for r in queued] == [202] * 40
    ids = {r.headers["x-invocation-id"] for r in queued}
    by_id = await settled(apis[1], path, ids)
    sync_workers = {
        r["worker"]
        for r in await records(apis[0], path)
        if r["invocation_type"] == "RequestResponse"
    }
    async_workers = {by_id[i][-1]["worker"] for i in ids}
    assert len(sync_workers) == 2 and len(async_workers) == 2, (sync_workers, async_workers)


async def test_killing_the_async_streams_leader_loses_nothing(
    cluster: Cluster, apis: list[httpx.AsyncClient]
) -> None:
    path = await make(apis[0], ECHO)
    ct, ft = path.split("/")[3:5]
    probe = await connect(cluster.url, name="test-find-leader")
    placed = (await probe.jetstream().stream_info(subjects.ASYNC_STREAM)).cluster
    await probe.close()
    assert placed is not None and placed.leader
    leader = placed.leader
    # Result events are plain NATS messages: listen on a server that stays up, or the
    # listener's own reconnect would miss some.
    survivor = next(name for name in ("n1", "n2", "n3") if name != leader)
    nc = await connect(cluster.server_url(survivor), name="test-leader-kill")
    results: Counter[str] = Counter()

    async def on_result(msg: Msg) -> None:
        results[msg.data.decode()] += 1

    try:
        await nc.subscribe(f"{subjects.function_subject(ct, ft)}.result.>", cb=on_result)
        await nc.flush()
        accepted: set[str] = set()
        refused = Counter[int]()
        total = 2000

        async def submit(i: int) -> None:
            try:
                answer = await apis[i % 2].post(
                    f"{path}/invoke",
                    json={"payload": i, "invocation_type": "Async"},
                    headers={"Idempotency-Key": f"k-{i}"},
                )
            except httpx.HTTPError:
                refused[0] += 1
                return
            if answer.status_code == 202:
                accepted.add(answer.headers["x-invocation-id"])
            else:
                refused[answer.status_code] += 1

        gate = asyncio.Semaphore(32)

        async def gated(i: int) -> None:
            async with gate:
                await submit(i)
                if i == total // 3:
                    cluster.kill_server(leader)

        await asyncio.gather(*(gated(i) for i in range(total)))
        assert len(accepted) > total // 2, refused
        by_id = await settled(apis[1], path, accepted, timeout=180)
        assert all(len(by_id[i]) == 1 for i in accepted)  # one record each, final
        assert all(by_id[i][0]["status"] == "succeeded" for i in accepted)
        await asyncio.sleep(1)
        heard: Counter[str] = Counter()
        for data, n in results.items():
            heard[json.loads(data)["invocation_id"]] += n
        # Result events are at least once: one sent to the dead server before it confirmed is
        # sent again (bus/result_events.py), so a listener may hear a few twice, never none.
        assert [i for i in accepted if heard[i] == 0] == []
        twice = sum(1 for i in accepted if heard[i] > 1)
        assert twice <= len(accepted) // 100, twice
        await cluster.restart_server(leader)
        for _ in range(120):  # it rejoins and catches up
            info = (await nc.jetstream().stream_info(subjects.ASYNC_STREAM)).cluster
            assert info is not None
            peers = {p.name: p.current for p in info.replicas or []}
            if info.leader and len(peers) == 2 and all(peers.values()):
                break
            await asyncio.sleep(0.5)
        else:
            raise AssertionError(f"{leader} did not catch up: {info}")
        print(
            f"leader kill: {len(accepted)} accepted, refused {dict(refused)}, {twice} heard twice"
        )
    finally:
        await nc.close()


async def test_a_server_kill_under_sync_load_answers_every_caller(
    cluster: Cluster, apis: list[httpx.AsyncClient]
) -> None:
    path = await make(apis[0], ECHO, timeout=5000)
    codes: Counter[int] = Counter()
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + 6

    async def caller(i: int) -> None:
        while loop.time() < stop_at:
            try:
                answer = await apis[i % 2].post(
                    f"{path}/invoke", json={"payload": i}, timeout=5 + 10
                )
                codes[answer.status_code] += 1
            except httpx.ConnectError:
                codes[0] += 1

    load = [asyncio.create_task(caller(i)) for i in range(8)]
    await asyncio.sleep(1.5)
    victim = "n2"
    cluster.kill_server(victim)
    await asyncio.gather(*load)  # none hangs: each answered within its timeout
    assert set(codes) <= {200, 503}, codes
    assert codes[200] > 0
    await cluster.restart_server(victim)
    print(f"server kill under sync load: {dict(codes)}")


async def test_a_stopped_worker_s_async_work_is_redelivered_and_recorded_once(
    cluster: Cluster, apis: list[httpx.AsyncClient]
) -> None:
    path = await make(apis[0], SLEEPY, runtime="python", timeout=10_000)
    queued = await asyncio.gather(
        *(
            apis[i % 2].post(f"{path}/invoke", json={"payload": 0.5, "invocation_type": "Async"})
            for i in range(8)
        )
    )
    ids = {r.headers["x-invocation-id"] for r in queued}
    await asyncio.sleep(0.3)
    stopped = cluster.worker_pids()[0]
    os.kill(stopped, signal.SIGSTOP)
    try:
        await asyncio.sleep(ACK_WAIT_S * 2)
    finally:
        os.kill(stopped, signal.SIGCONT)
    by_id = await settled(apis[1], path, ids)
    assert all(len(by_id[i]) == 1 and by_id[i][0]["status"] == "succeeded" for i in ids), by_id


async def test_a_worker_with_an_empty_data_dir_serves_every_function(
    cluster: Cluster, apis: list[httpx.AsyncClient], tmp_path: Path
) -> None:
    path = await make(apis[0], ECHO)
    before = await workers_ready(apis[0])
    third = await cluster.start_role("worker", tmp_path / "empty")
    try:
        await wait_for_workers(apis[0], before + 1)
        answers = await asyncio.gather(
            *(apis[i % 2].post(f"{path}/invoke", json={"payload": i}) for i in range(30))
        )
        assert [a.status_code for a in answers] == [200] * 30
        workers = Counter(r["worker"] for r in await records(apis[0], path))
        assert len(workers) == 3, workers
    finally:
        third.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(third.wait(), 30) == 0


async def test_a_rolling_restart_under_steady_load_fails_no_accepted_request(
    cluster: Cluster, apis: list[httpx.AsyncClient], tmp_path: Path
) -> None:
    """SIGTERM each worker and then an API in turn, starting a replacement each time, while
    callers keep invoking through both APIs: every answer is a 200. A call the stopping API
    never took (connection refused or closed before it read the request) goes to the other."""
    path = await make(apis[0], ECHO)
    codes: Counter[int] = Counter()
    odd: list[str] = []
    not_taken = 0
    bases = list(cluster.apis)
    stopping = asyncio.Event()

    async def caller(i: int) -> None:
        nonlocal not_taken
        async with httpx.AsyncClient(headers=cluster.auth, timeout=30) as http:
            n = i
            while not stopping.is_set():
                base = bases[n % len(bases)]
                n += 1
                try:
                    answer = await http.post(f"{base}{path}/invoke", json={"payload": n})
                except (httpx.ConnectError, httpx.RemoteProtocolError):
                    not_taken += 1
                    continue
                codes[answer.status_code] += 1
                if answer.status_code != 200 and len(odd) < 5:
                    odd.append(f"{base}: {answer.text}")

    load = [asyncio.create_task(caller(i)) for i in range(6)]
    try:
        await asyncio.sleep(1)
        for n, pid in enumerate(cluster.worker_pids()):
            # The replacements serve the tests after this one.
            before = await workers_ready(apis[1])
            await cluster.start_role("worker", tmp_path / f"replacement-{n}", keep=True)
            await wait_for_workers(apis[1], before + 1)
            os.kill(pid, signal.SIGTERM)
            await wait_for_workers(apis[1], before)  # the old one drained and left
        replacement = await cluster.start_role("api", cluster.data_dir, keep=True)
        assert replacement.stdout is not None
        line = (await asyncio.wait_for(replacement.stdout.readline(), 60)).decode()
        new = line.strip().rpartition("=")[2]
        bases.append(new)
        old = bases.pop(0)
        cluster.apis[cluster.apis.index(old)] = new  # for the tests after this one
        api_pid = next(
            pid
            for pid in descendants(cluster.process.pid)
            if b"api" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            and _listens(pid, old)
        )
        os.kill(api_pid, signal.SIGTERM)
        await asyncio.sleep(2)
    finally:
        stopping.set()
        await asyncio.gather(*load)
    assert set(codes) == {200}, (codes, odd)
    print(f"rolling restart: {dict(codes)} answered, {not_taken} not taken")


def _listens(pid: int, base: str) -> bool:
    """Whether process ``pid`` owns the listening socket of ``base`` (http://host:port)."""
    port = int(base.rpartition(":")[2])
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rpartition(":")[2], 16) == port and fields[3] == "0A":
            return fields[9] in inodes
    return False


HANG = {"index.py": "import time\ndef handler(event, context):\n    time.sleep(3600)\n"}


async def test_callers_of_a_killed_worker_hear_worker_lost_and_the_others_keep_serving(
    cluster: Cluster, apis: list[httpx.AsyncClient], tmp_path: Path
) -> None:
    hanging = await make(apis[0], HANG, runtime="python", timeout=8000)
    echo = await make(apis[0], ECHO)
    before = await workers_ready(apis[0])
    doomed = await cluster.start_role("worker", tmp_path / "doomed")
    try:
        await wait_for_workers(apis[0], before + 1)
        loop = asyncio.get_running_loop()

        async def call(i: int) -> tuple[str, float]:
            answer = await apis[i % 2].post(f"{hanging}/invoke", json={"payload": None})
            return answer.json()["code"], loop.time()

        # Spread at random over the workers: some land on the one about to die.
        calls = [asyncio.create_task(call(i)) for i in range(30)]
        await asyncio.sleep(2)
        killed = loop.time()
        doomed.kill()
        served = await asyncio.gather(
            *(apis[i % 2].post(f"{echo}/invoke", json={"payload": i}) for i in range(20))
        )
        assert [r.status_code for r in served] == [200] * 20  # the others keep serving
        results = await asyncio.gather(*calls)
    finally:
        if doomed.returncode is None:
            doomed.kill()
        await doomed.wait()
    lost = [at - killed for code, at in results if code == "worker_lost"]
    assert lost and max(lost) < 3.0, results
    assert {code for code, _ in results} == {"worker_lost", "timeout"}, results


async def test_a_subject_trigger_runs_each_message_once_with_its_stream_replicated(
    cluster: Cluster, apis: list[httpx.AsyncClient]
) -> None:
    path = await make(apis[0], ECHO)
    ct, ft = path.split("/")[3:5]
    source = f"cl{uuid.uuid4().hex[:8]}.orders"
    body = {
        "type": "subject",
        "source": source,
        "function": {"collection_topic": ct, "service": ft},
    }
    created = await apis[0].post("/compute/triggers", json=body)
    assert created.status_code == 201, created.text
    trigger_id = created.json()["body"]["id"]
    client = await connect(cluster.role_url("client"), name="test-subject-trigger")
    try:
        for n in range(20):
            await client.publish(source, json.dumps(n).encode())
        await client.flush()
    finally:
        await client.close()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        done = [r for r in await records(apis[1], path) if r["status"] == "succeeded"]
        if len(done) >= 20:
            break
        assert loop.time() < deadline, f"{len(done)} of 20 ran"
        await asyncio.sleep(0.5)
    assert sorted(r["output"]["got"] for r in done) == list(range(20))  # each once
    assert {r["trigger"] for r in done} == {trigger_id}
    nc = await connect(cluster.url, name="test-trigger-replicas")
    try:
        info = await nc.jetstream().stream_info(subjects.trigger_stream(trigger_id, "production"))
        assert info.config.num_replicas == 3
    finally:
        await nc.close()
    assert (await apis[1].delete(f"/compute/triggers/{trigger_id}")).status_code == 200
