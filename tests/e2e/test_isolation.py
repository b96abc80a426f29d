"""Hostile handlers: each one attacks, the test asserts the outcome, that nothing it started
survives, and that a normal function on the same worker still answers.

They run at the strongest isolation level this machine offers; on CI (bubblewrap installed,
cgroups writable) that is ``bwrap+cgroup`` and the test below refuses anything weaker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio
from nats.aio.client import Client

from executor.runtime.workspace_root import workspace_root
from tests.e2e.attacks import NODE_ATTACKS, PY_ATTACKS
from tests.helpers import (
    Fn,
    MakeFunction,
    Stack,
    function_body,
    living_descendants,
    second_api,
    wait_for_record,
)

NORMAL = {"index.js": "exports.handler = async (e) => ({ ok: e });"}


@pytest_asyncio.fixture
async def level(stack: Stack) -> str:
    async with httpx.AsyncClient(base_url=stack.api, timeout=30, headers=stack.auth) as client:
        isolation: str = (await client.get("/readyz")).json()["isolation"]
    return isolation


async def test_ci_runs_the_strongest_level(level: str, http: httpx.AsyncClient) -> None:
    gaps = (await http.get("/readyz")).json()["isolation_gaps"]
    if os.environ.get("CI") == "true":
        assert level == "bwrap+cgroup"
        if os.geteuid() == 0:  # nothing missing: freezer, CPU limit, seccomp, own uids
            assert gaps == [], gaps
    assert isinstance(gaps, list) and all(isinstance(gap, str) for gap in gaps)


Attacker = Callable[..., Awaitable[httpx.Response]]


@pytest_asyncio.fixture
async def attack(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> AsyncIterator[Callable[..., Awaitable[tuple[Fn, httpx.Response]]]]:
    """``await attack(runtime, op, **event)``: run one attack in a fresh function, then check
    that nothing it started is alive and that a normal function still answers."""
    made: dict[tuple[str, str], Fn] = {}
    before = living_descendants()

    async def run(runtime: str, op: str, timeout: int = 5000, **event: Any) -> tuple[Fn, Any]:
        key = (runtime, str(timeout))
        if key not in made:
            files = {"index.py": PY_ATTACKS} if runtime == "python" else {"index.js": NODE_ATTACKS}
            made[key] = await make_function(
                files, runtime=runtime, timeout=timeout, size="256MB", store_payload=False
            )
        fn = made[key]
        response = await http.post(f"{fn.path}/invoke", json={"payload": {"op": op, **event}})
        return fn, response

    yield run
    normal = await make_function(NORMAL)
    answer = await http.post(f"{normal.path}/invoke", json={"payload": 1})
    assert answer.json() == {"body": {"ok": 1}}, answer.text
    # At most one warm sandbox (bwrap, its init, the handler) per function used here remains
    # (and per function a test made beside them: the load check at create warms one); nothing
    # an attack started is among them.
    assert len(living_descendants() - before) <= 3 * (len(made) + 2)


def body(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["body"]


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["code"]
    return code


@pytest.mark.parametrize("runtime", ["python", "nodejs"])
async def test_cannot_write_into_its_own_workspace(
    attack: Callable[..., Awaitable[tuple[Fn, httpx.Response]]], runtime: str
) -> None:
    _, response = await attack(runtime, "write_workspace")
    assert body(response).startswith("refused"), response.text


async def test_read_only_fs_leaves_no_writable_path(
    attack: Callable[..., Awaitable[tuple[Fn, httpx.Response]]], level: str
) -> None:
    _, response = await attack("python", "write_anywhere")
    wrote = body(response)
    if level.startswith("bwrap"):
        assert wrote == []
    else:
        assert "/workspace" not in wrote and "/usr" not in wrote


async def test_read_only_fs_false_gives_a_private_tmp(
    http: httpx.AsyncClient, make_function: MakeFunction, level: str
) -> None:
    if not level.startswith("bwrap"):
        pytest.skip("a private /tmp needs bwrap")
    files = {"index.py": PY_ATTACKS}
    options = {"read_only_fs": False}
    writable = await make_function(files, runtime="python", compute_asset=options)
    other = await make_function(files, runtime="python", compute_asset=options)
    response = await http.post(
        f"{writable.path}/invoke", json={"payload": {"op": "write_anywhere"}}
    )
    assert body(response) == ["/tmp"]
    # Another function's /tmp is its own: it does not see the file.
    seen = await http.post(
        f"{other.path}/invoke", json={"payload": {"op": "listdir", "path": "/tmp"}}
    )
    assert body(seen) == []


async def test_a_root_handler_cannot_remount_its_workspace(
    attack: Callable[..., Awaitable[tuple[Fn, httpx.Response]]], level: str
) -> None:
    if not level.startswith("bwrap"):
        pytest.skip("needs bwrap")
    _, response = await attack("python", "remount")
    assert body(response) != 0


async def test_runs_unprivileged_alone(
    attack: Callable[..., Awaitable[tuple[Fn, httpx.Response]]], level: str, stack: Stack
) -> None:
    if not level.startswith("bwrap"):
        pytest.skip("needs bwrap")
    _, response = await attack("python", "whoami")
    me = body(response)
    if os.geteuid() == 0:  # a host uid of its own, never root's
        first, last = stack.settings.sandbox_uids
        assert first <= me["uid"] == me["gid"] <= last
    else:  # the worker's own uid, seen as nobody
        assert me["uid"] == me["gid"] == 65534
    assert int(me["caps"], 16) == 0
    assert me["procs"] <= 3  # its own pid namespace: the sandbox's init and itself


@pytest.mark.parametrize(
    "path",
    ["/etc/shadow", "/etc/passwd", "/home", "/root/.bashrc", "__data_dir__", "__other_workspace__"],
)
async def test_cannot_read_secrets_or_other_workspaces(
    attack: Callable[..., Awaitable[tuple[Fn, httpx.Response]]],
    make_function: MakeFunction,
    stack: Stack,
    level: str,
    path: str,
) -> None:
    if not level.startswith("bwrap"):
        pytest.skip("file visibility is only restricted under bwrap")
    if path == "__data_dir__":
        path = str(stack.settings.data_dir.resolve())
    elif path == "__other_workspace__":
        workspaces = workspace_root(stack.settings.data_dir, bound=True)
        await make_function({"index.js": "exports.handler = async () => 'victim';"})
        path = str(next(p for p in workspaces.iterdir() if p.is_dir()))
    _, read = await attack("python", "read", path=path)
    _, listed = await attack("python", "listdir", path=path)
    assert str(body(read)).startswith("refused"), read.text
    assert str(body(listed)).startswith("refused") or body(listed) == [], listed.text


@pytest.mark.parametrize("runtime", ["python", "nodejs"])
async def test_environment_holds_only_what_the_function_set(
    attack: Callable[..., Awaitable[tuple[Fn, httpx.Response]]], runtime: str
) -> None:
    os.environ["COMPUTEBUS_TEST_SECRET"] = "hunter2"
    try:
        _, response = await attack(runtime, "environ")
    finally:
        del os.environ["COMPUTEBUS_TEST_SECRET"]
    env = body(response)
    assert "hunter2" not in str(env)
    if runtime == "python":  # nor through /proc: pid 1 there is the sandbox's own init
        _, pid1 = await attack(runtime, "read_text", path="/proc/1/environ")
        assert "hunter2" not in pid1.text and "NATS" not in pid1.text
    assert not any(k.startswith(("NATS", "COMPUTEBUS")) for k in env)
    assert set(env) <= {"PATH", "HOME", "TMPDIR", "LANG", "PWD", "LC_CTYPE"}


@pytest.mark.parametrize("runtime", ["python", "nodejs"])
async def test_no_network_to_the_bus_or_the_api(
    attack: Callable[..., Awaitable[tuple[Fn, httpx.Response]]],
    stack: Stack,
    runtime: str,
    level: str,
) -> None:
    if not level.startswith("bwrap"):
        pytest.skip("network isolation needs bwrap")
    nats_port = urlsplit(stack.nats_url).port
    api_port = urlsplit(stack.api).port
    for port in (nats_port, api_port):
        _, response = await attack(runtime, "connect", port=port)
        assert str(body(response)).startswith("refused"), (port, response.text)


async def test_network_true_opts_in(
    http: httpx.AsyncClient, make_function: MakeFunction, stack: Stack
) -> None:
    fn = await make_function(
        {"index.py": PY_ATTACKS}, runtime="python", compute_asset={"network": True}
    )
    port = urlsplit(stack.api).port
    response = await http.post(
        f"{fn.path}/invoke", json={"payload": {"op": "connect", "port": port}}
    )
    assert body(response) == "connected"
    shown = await http.get(fn.path)
    assert shown.json()["body"]["compute_asset"]["network"] is True


async def test_the_bus_refuses_clients_without_the_credentials(stack: Stack) -> None:
    # What a handler with network would meet: the embedded server wants the generated password.
    parts = urlsplit(stack.nats_url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 4222), 5) as s:
        s.recv(4096)  # INFO
        s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nPUB x 1\r\nx\r\nPING\r\n')
        answer = b""
        while chunk := s.recv(4096):  # the auth callout refuses after a short delay
            answer += chunk
    assert b"Authorization Violation" in answer


@pytest.mark.parametrize("runtime", ["python", "nodejs"])
async def test_memory_hog_is_out_of_memory(
    attack: Callable[..., Awaitable[tuple[Fn, httpx.Response]]], runtime: str
) -> None:
    _, response = await attack(runtime, "memory", timeout=20_000)
    assert response.status_code == 500, response.text
    assert error_code(response) == "out_of_memory", response.text
    assert "out of memory" in response.json()["error"]


async def test_fork_bomb_is_contained(
    http: httpx.AsyncClient,
    attack: Callable[..., Awaitable[tuple[Fn, httpx.Response]]],
    level: str,
) -> None:
    before = living_descendants()
    fn, response = await attack("python", "forkbomb", timeout=3000)
    assert error_code(response) == "timeout", response.text
    if "cgroup" in level:  # pids.max stopped it long before 10,000
        record = await wait_for_record(http, fn, response.headers["x-invocation-id"])
        assert "fork refused after" in record["logs"], record["logs"][-500:]
    for _ in range(100):
        if len(living_descendants() - before) <= 3:
            break
        await asyncio.sleep(0.05)
    assert len(living_descendants() - before) <= 3


async def test_double_fork_setsid_escapee_is_killed(
    attack: Callable[..., Awaitable[tuple[Fn, httpx.Response]]], level: str
) -> None:
    if level == "rlimit":
        pytest.skip("only a sandbox or a cgroup can find a process that left the session")
    before = living_descendants()
    _, response = await attack("python", "escape", timeout=1500)
    assert error_code(response) == "timeout", response.text
    for _ in range(100):
        if len(living_descendants() - before) <= 3:
            break
        await asyncio.sleep(0.05)
    # The warm process was killed with everything it made; at most a fresh sandbox remains.
    assert len(living_descendants() - before) <= 3


@pytest.mark.parametrize("runtime", ["python", "nodejs"])
async def test_stdout_flood_is_truncated(
    http: httpx.AsyncClient,
    attack: Callable[..., Awaitable[tuple[Fn, httpx.Response]]],
    stack: Stack,
    runtime: str,
) -> None:
    fn, response = await attack(runtime, "flood", timeout=60_000)
    assert body(response) == "flooded"
    record = await wait_for_record(http, fn, response.headers["x-invocation-id"])
    assert record["logs_truncated"] is True
    assert len(record["logs"]) <= stack.settings.log_cap_bytes


async def test_kill_9_on_itself(
    attack: Callable[..., Awaitable[tuple[Fn, httpx.Response]]],
) -> None:
    _, response = await attack("python", "kill9")
    assert response.status_code == 500
    assert error_code(response) == "function_error"
    _, again = await attack("python", "ok")
    assert body(again) == "ok"


@pytest.mark.parametrize("runtime", ["python", "nodejs"])
async def test_twenty_megabyte_result_is_payload_too_large(
    attack: Callable[..., Awaitable[tuple[Fn, httpx.Response]]], runtime: str
) -> None:
    _, response = await attack(runtime, "big", timeout=20_000)
    assert response.status_code == 413, response.text[:300]
    assert error_code(response) == "payload_too_large"


# ---- hostile input at the API ------------------------------------------------------------------


async def test_ten_thousand_deep_payload_is_400(
    http: httpx.AsyncClient, nc: Client, make_function: MakeFunction
) -> None:
    fn = await make_function(NORMAL)
    deep = "[" * 10_000 + "]" * 10_000
    as_value = await http.post(
        f"{fn.path}/invoke",
        content=b'{"payload": ' + deep.encode() + b"}",
        headers={"content-type": "application/json"},
    )
    as_string = await http.post(f"{fn.path}/invoke", json={"payload": deep})
    for response in (as_value, as_string):
        assert response.status_code == 400, response.text
        assert "nested too deeply" in response.json()["error"]
    reply = await nc.request(fn.subject, deep.encode(), timeout=10)
    assert reply.headers is not None
    assert reply.headers["Nats-Service-Error-Code"] == "400"


async def test_catastrophic_pattern_does_not_stall_other_functions(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    slow = await make_function(
        NORMAL,
        timeout=3000,
        schema={"input": {"properties": {"s": {"type": "string", "pattern": "^(a|a)*$"}}}},
    )
    other = await make_function(NORMAL)
    stuck = asyncio.create_task(
        http.post(f"{slow.path}/invoke", json={"payload": {"s": "a" * 40 + "!"}})
    )
    await asyncio.sleep(0.2)  # the slow validation is running now
    answers = [await http.post(f"{other.path}/invoke", json={"payload": i}) for i in range(5)]
    assert not stuck.done()  # the others were answered while it was still matching
    assert [a.json() for a in answers] == [{"body": {"ok": i}} for i in range(5)]
    response = await stuck
    assert response.status_code == 504, response.text
    assert response.json()["code"] == "timeout"
    assert "pattern" in response.json()["error"]
    ok = await http.post(f"{slow.path}/invoke", json={"payload": {"s": "aaaa"}})
    assert ok.status_code == 200, ok.text


async def test_pattern_that_is_not_a_regex_is_refused_at_create(http: httpx.AsyncClient) -> None:
    body = function_body(NORMAL, schema={"input": {"properties": {"a": {"pattern": "(unclosed"}}}})
    response = await http.post("/compute/functions", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["details"][0]["path"] == "/schema/input/properties/a/pattern"


async def test_network_opt_in_is_refused_unless_the_operator_allows_it(stack: Stack) -> None:
    async with second_api(stack, allow_network=False) as api:
        body = function_body(NORMAL, compute_asset={"network": True})
        response = await api.post("/compute/functions", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["details"][0]["path"] == "/compute_asset/network"


async def test_a_nested_user_namespace_is_refused(
    attack: Callable[..., Awaitable[tuple[Fn, httpx.Response]]], level: str
) -> None:
    if not level.startswith("bwrap"):
        pytest.skip("needs bwrap")
    _, response = await attack("python", "nested_userns")
    assert body(response) != 0


async def test_env_vars_are_not_on_any_command_line(
    http: httpx.AsyncClient, make_function: MakeFunction, level: str
) -> None:
    fn = await make_function(
        {"index.py": PY_ATTACKS},
        runtime="python",
        compute_asset={"env_vars": ["API_TOKEN=s3cr3t-value"]},
    )
    env = body(await http.post(f"{fn.path}/invoke", json={"payload": {"op": "environ"}}))
    assert env["API_TOKEN"] == "s3cr3t-value"  # the handler has it...
    for pid in living_descendants():  # ...but no process's argv shows it
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            assert b"s3cr3t-value" not in cmdline
            if cmdline.startswith(b"/usr/bin/bwrap"):  # root on the host: starts with none of it
                assert Path(f"/proc/{pid}/environ").read_bytes() == b""
            # Nothing started with it, not even setpriv (root until it drops to the uid): the
            # bootstrap sets it from a file only the sandbox has.
            if level.startswith("bwrap"):
                assert b"s3cr3t-value" not in Path(f"/proc/{pid}/environ").read_bytes()


async def test_a_reply_frame_over_the_limit_is_not_buffered(
    attack: Callable[..., Awaitable[tuple[Fn, httpx.Response]]],
) -> None:
    _, response = await attack("python", "huge_frame", timeout=5000)
    assert response.status_code == 413, response.text
    assert error_code(response) == "payload_too_large"


async def test_a_process_that_stops_reading_still_times_out(
    attack: Callable[..., Awaitable[tuple[Fn, httpx.Response]]],
) -> None:
    await attack("python", "stop_reading", timeout=1000)
    # The next request is bigger than the pipe buffer and nobody reads it.
    _, response = await attack("python", "ok", timeout=1000, pad="x" * 300_000)
    assert response.status_code == 504, response.text
    assert "1000 ms" in response.json()["error"]  # the worker's own timeout, not the API's


ENV_READERS = {
    "python": {
        "index.py": (
            "import os, subprocess\n"
            "def handler(event, context):\n"
            "    child = subprocess.run(['/bin/sh', '-c', 'echo $API_TOKEN'],\n"
            "                           capture_output=True, text=True).stdout.strip()\n"
            "    return {'own': os.environ.get('API_TOKEN'), 'child': child,\n"
            "            'marker': 'COMPUTEBUS_ENVIRONMENT' in os.environ}\n"
        )
    },
    "nodejs": {
        "index.js": (
            "const { execSync } = require('child_process');\n"
            "exports.handler = async () => ({ own: process.env.API_TOKEN,\n"
            "  child: execSync('echo $API_TOKEN', { shell: '/bin/sh' }).toString().trim(),\n"
            "  marker: 'COMPUTEBUS_ENVIRONMENT' in process.env });\n"
        )
    },
}


@pytest.mark.parametrize("runtime", ["python", "nodejs"])
async def test_env_vars_reach_the_handler_and_its_children(
    http: httpx.AsyncClient, make_function: MakeFunction, runtime: str
) -> None:
    value = "a b=c;'\"$x"  # spaces, =, quotes and $ survive
    fn = await make_function(
        ENV_READERS[runtime], runtime=runtime, compute_asset={"env_vars": [f"API_TOKEN={value}"]}
    )
    seen = body(await http.post(f"{fn.path}/invoke", json={"payload": None}))
    assert seen == {"own": value, "child": value, "marker": False}, seen
