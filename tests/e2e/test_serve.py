"""``computebus serve`` as a user runs it: a real process tree, driven over HTTP and NATS."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import nats
import pytest

from bus.embedded import EmbeddedNats
from tests.helpers import alive, descendants, function_body, start_serve, token_of


@pytest.fixture
async def served(
    tmp_path: Path,
) -> AsyncIterator[tuple[asyncio.subprocess.Process, dict[str, str]]]:
    proc, fields = await start_serve("--data-dir", str(tmp_path / "data"))
    try:
        yield proc, fields
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_serve_runs_a_function_and_stops_cleanly_on_sigterm(
    served: tuple[asyncio.subprocess.Process, dict[str, str]], tmp_path: Path
) -> None:
    proc, fields = served
    assert fields["api"].startswith("http://127.0.0.1:")
    # The embedded server keeps its store and generated credentials under --data-dir.
    nats_dir = tmp_path / "data" / "nats"
    assert (nats_dir / "jetstream").is_dir()
    password = fields["nats"].split("//", 1)[1].split("@", 1)[0].split(":", 1)[1]
    assert password in (nats_dir / "nats-credentials.json").read_text()
    async with httpx.AsyncClient(
        base_url=fields["api"], timeout=30, headers=token_of(fields)
    ) as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["workers"] >= 1
        body = function_body(
            {"index.py": "def handler(e, c):\n    return {'twice': e * 2}\n"},
            runtime="python",
            collection="served",
        )
        created = await http.post("/compute/functions", json=body)
        assert created.status_code == 201, created.text
        service = created.json()["body"]["compute_asset"]["service"]
        answer = await http.post(
            f"/compute/functions/served/{service}/invoke", json={"payload": 21}
        )
        assert answer.json() == {"body": {"twice": 42}}

    # The printed NATS URL works as it is (credentials included).
    nc = await nats.connect(fields["nats"])
    reply = await nc.request(f"ms.compute.served.function.{service}", b"4", timeout=10)
    assert reply.data == b'{"twice":8}'
    await nc.close()

    tree = descendants(proc.pid)
    assert len(tree) >= 3  # nats-server, the worker, a warm handler process
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 60) == 0
    for _ in range(50):
        if not any(alive(pid) for pid in tree):
            break
        await asyncio.sleep(0.1)
    assert [pid for pid in tree if alive(pid)] == []


async def test_sigterm_lets_a_running_invocation_finish(
    served: tuple[asyncio.subprocess.Process, dict[str, str]],
) -> None:
    proc, fields = served
    async with httpx.AsyncClient(
        base_url=fields["api"], timeout=30, headers=token_of(fields)
    ) as http:
        body = function_body(
            {"index.py": "import time\n\ndef handler(e, c):\n    time.sleep(2.5)\n    return 1\n"},
            runtime="python",
            collection="drain",
        )
        created = await http.post("/compute/functions", json=body)
        service = created.json()["body"]["compute_asset"]["service"]
        running = asyncio.create_task(
            http.post(f"/compute/functions/drain/{service}/invoke", json={"payload": None})
        )
        await asyncio.sleep(1.2)  # the invocation is inside the handler now
        proc.send_signal(signal.SIGTERM)
        answer = await running
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"body": 1}
    assert await asyncio.wait_for(proc.wait(), 60) == 0


@pytest.mark.parametrize("how", ["flag", "env"])
async def test_serve_uses_an_existing_nats_when_given_one(
    nats_server: EmbeddedNats, tmp_path: Path, how: str
) -> None:
    if how == "flag":
        proc, fields = await start_serve(
            "--data-dir", str(tmp_path / "d"), "--nats-url", nats_server.url
        )
    else:
        proc, fields = await start_serve(
            "--data-dir", str(tmp_path / "d"), env={"NATS_URL": nats_server.url}
        )
    try:
        assert fields["nats"] == nats_server.url
        assert not (tmp_path / "d" / "nats").exists()
        async with httpx.AsyncClient(base_url=fields["api"], timeout=30) as http:
            assert (await http.get("/readyz")).status_code == 200  # open without a token
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0


async def test_a_restarted_serve_still_knows_its_functions(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    proc, fields = await start_serve("--data-dir", data)
    try:
        async with httpx.AsyncClient(
            base_url=fields["api"], timeout=30, headers=token_of(fields)
        ) as http:
            body = function_body(
                {"index.js": "exports.handler = async () => 'kept';"}, collection="keep"
            )
            service = (await http.post("/compute/functions", json=body)).json()["body"][
                "compute_asset"
            ]["service"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0

    proc, fields = await start_serve("--data-dir", data)
    try:
        async with httpx.AsyncClient(
            base_url=fields["api"], timeout=30, headers=token_of(fields)
        ) as http:
            answer = await http.post(f"/compute/functions/keep/{service}/invoke", json={})
            assert answer.json() == {"body": "kept"}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0


async def start_serve_logged(
    data_dir: Path, *extra: str, env: dict[str, str] | None = None
) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    """``serve`` with its stderr (the log) kept; read it with ``proc.communicate()``."""
    return await start_serve(
        "--data-dir", str(data_dir), *extra, env=env, stderr=asyncio.subprocess.PIPE
    )


async def test_a_normal_start_and_stop_logs_no_warnings(tmp_path: Path) -> None:
    proc, _ = await start_serve_logged(tmp_path / "data")
    proc.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    log = stderr.decode()
    assert proc.returncode == 0, log
    assert " WARNING " not in log and " ERROR " not in log, log


async def test_a_second_ctrl_c_exits_at_once_and_takes_nats_server_with_it(
    tmp_path: Path,
) -> None:
    proc, _ = await start_serve_logged(tmp_path / "data")
    tree = descendants(proc.pid)
    assert len(tree) >= 2  # nats-server and the worker
    proc.send_signal(signal.SIGINT)
    await asyncio.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 130
    for _ in range(100):
        if not any(alive(pid) for pid in tree):
            break
        await asyncio.sleep(0.1)
    assert [pid for pid in tree if alive(pid)] == []
    # The data dir is free again: the next serve starts on it.
    again, _ = await start_serve_logged(tmp_path / "data")
    again.send_signal(signal.SIGTERM)
    await asyncio.wait_for(again.communicate(), 60)
    assert again.returncode == 0


async def test_a_busy_port_is_one_line_and_starts_nothing(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "executor.cli",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "data"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert out == b""
    lines = err.decode().strip().splitlines()
    assert lines == [
        f"computebus: cannot listen on 127.0.0.1:{port}: in use (is another computebus running? "
        "choose another with --port or COMPUTEBUS_PORT, 0 picks a free one)"
    ]
    assert not (tmp_path / "data" / "nats").exists()  # no nats-server was started


async def test_settings_name_their_variable_and_typos_are_pointed_out(tmp_path: Path) -> None:
    bad = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "executor.cli",
        "serve",
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COMPUTEBUS_MAX_TIMEOUT_MS": "-5"},
    )
    _, err = await asyncio.wait_for(bad.communicate(), 30)
    assert bad.returncode == 2
    assert err.decode().strip().splitlines()[-1] == (
        "computebus: COMPUTEBUS_MAX_TIMEOUT_MS must be positive, got -5"
    )
    proc, _ = await start_serve_logged(tmp_path / "data", env={"COMPUTEBUS_IDLE": "5"})
    proc.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert (
        "COMPUTEBUS_IDLE is not a computebus setting and is ignored "
        "(did you mean COMPUTEBUS_IDLE_S?)"
    ) in stderr.decode()
