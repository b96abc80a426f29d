"""What ``computebus serve`` logs, read from its stderr (its worker's too) as an operator would:
one line per invocation, a line per change naming the token, start and stop summaries, the
access log when asked for, JSON when asked for, and never a payload or a secret."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import nats

from schemas.headers import H_INVOCATION_ID
from tests.helpers import function_body, start_serve, token_of

SECRET = "sk_live_do-not-log-4242"  # in every payload
ENV_SECRET = "env-secret-do-not-log-77"
HANDLER = (
    "def handler(event, context):\n"
    "    print('handler log', event)\n"
    "    if event.get('fail'):\n"
    "        raise RuntimeError('card ' + event['card'])\n"
    "    return {'echo': event['card']}\n"
)


async def _serve(
    data_dir: Path, env: dict[str, str]
) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    return await start_serve(
        "--data-dir",
        str(data_dir),
        stderr=asyncio.subprocess.PIPE,
        env={"COMPUTEBUS_SPARES": "0", **env},
    )


async def _stop(proc: asyncio.subprocess.Process) -> str:
    proc.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    return stderr.decode()


def _client(fields: dict[str, str]) -> tuple[httpx.AsyncClient, str]:
    headers = token_of(fields)
    token = headers["Authorization"].removeprefix("Bearer ")
    return httpx.AsyncClient(base_url=fields["api"], timeout=30, headers=headers), token


async def _create(http: httpx.AsyncClient, collection: str) -> tuple[str, str]:
    body = function_body(
        {"index.py": HANDLER},
        runtime="python",
        collection=collection,
        compute_asset={"env_vars": [f"API_KEY={ENV_SECRET}"]},
    )
    created = await http.post("/compute/functions", json=body)
    assert created.status_code == 201, created.text
    return body["name"], created.json()["body"]["compute_asset"]["service"]


async def _invoke(http: httpx.AsyncClient, path: str, payload: Any, status: int) -> str:
    answer = await http.post(f"{path}/invoke", json={"payload": payload})
    assert answer.status_code == status, answer.text
    return answer.headers["X-Invocation-Id"]


async def _finished(http: httpx.AsyncClient, url: str) -> str:
    for _ in range(200):
        answer = await http.get(url)
        status: str = answer.json()["body"]["status"] if answer.status_code == 200 else ""
        if status in ("succeeded", "failed"):
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url} did not finish")


async def test_json_logs_a_line_per_invocation_and_change_and_no_secrets(tmp_path: Path) -> None:
    env = {"COMPUTEBUS_LOG_FORMAT": "json", "COMPUTEBUS_ACCESS_LOG": "1"}
    proc, fields = await _serve(tmp_path / "data", env)
    try:
        http, admin = _client(fields)
        async with http:
            name, service = await _create(http, "logged")
            path = f"/compute/functions/logged/{service}"
            ok = await _invoke(http, path, {"card": SECRET}, 200)
            failed = await _invoke(http, path, {"card": SECRET, "fail": True}, 500)
            nc = await nats.connect(fields["nats"])
            reply = await nc.request(
                f"ms.compute.logged.function.{service}",
                json.dumps({"card": SECRET}).encode(),
                timeout=10,
            )
            await nc.close()
            assert reply.headers is not None
            over_nats = reply.headers[H_INVOCATION_ID]
            queued = await http.post(
                f"{path}/invoke", json={"payload": {"card": SECRET}, "invocation_type": "Async"}
            )
            assert queued.status_code == 202, queued.text
            in_async = queued.json()["body"]["invocation_id"]
            assert await _finished(http, f"{path}/invocations/{in_async}") == "succeeded"
            tokens = (await http.get("/compute/tokens")).json()["body"]["results"]
    finally:
        log = await _stop(proc)

    entries = [json.loads(line) for line in log.splitlines() if line.strip()]  # all JSON
    assert all({"ts", "level", "logger", "message"} <= e.keys() for e in entries)
    runs = [e for e in entries if e["logger"] == "computebus.invocation"]
    by_id = {e["invocation_id"]: e for e in runs}
    assert Counter(e["invocation_id"] for e in runs) == Counter([ok, failed, over_nats, in_async])
    common = {"function": f"logged/{name}", "service": service, "revision": 1}
    for entry in runs:
        assert entry.items() >= common.items(), entry
        assert entry["worker"] and isinstance(entry["duration_ms"], float)
        assert re.fullmatch(r"[0-9a-f]{32}", entry["trace_id"]), entry  # joins the record's
    assert (
        by_id[ok].items()
        >= {
            "level": "INFO",
            "kind": "sync",
            "via": "http",
            "status": "succeeded",
            "code": None,
            "http_status": 200,
        }.items()
    )
    assert (
        by_id[failed].items()
        >= {
            "level": "WARNING",
            "status": "failed",
            "code": "function_error",
            "http_status": 500,
        }.items()
    )
    assert (
        by_id[over_nats].items() >= {"kind": "sync", "via": "nats", "status": "succeeded"}.items()
    )
    assert (
        by_id[in_async].items()
        >= {
            "kind": "async",
            "via": "http",
            "attempt": 1,
            "status": "succeeded",
        }.items()
    )

    (admin_record,) = tokens
    (created,) = [e for e in entries if e.get("change") == "created"]
    assert created["logger"] == "computebus.changes"
    assert created["token_id"] == admin_record["id"]
    assert created["token_name"] == admin_record["name"]
    assert admin_record["name"] in created["message"] and service in created["message"]

    messages = [e["message"] for e in entries]
    assert any(m.startswith("worker ") and " ready on " in m for m in messages), messages
    assert any(m.startswith("api ready on ") for m in messages), messages
    assert any(m.startswith("worker ") and " stopped: drained " in m for m in messages)
    assert any(m.startswith("serve stopped: ") for m in messages), messages
    # uvicorn's access log sees the invokes too (they skip Starlette, not uvicorn).
    access = [e for e in entries if e["logger"] == "uvicorn.access"]
    invokes = [e for e in access if e["path"] == f"{path}/invoke"]
    assert sorted(e["http_status"] for e in invokes) == [200, 202, 500]

    for secret in (SECRET, ENV_SECRET, admin, "handler log"):
        assert secret not in log
    assert fields["nats"].split("@", 1)[0].rsplit(":", 1)[1] not in log  # the NATS password


async def test_text_logs_one_readable_line_per_invocation_and_the_lifecycle(
    tmp_path: Path,
) -> None:
    proc, fields = await _serve(tmp_path / "data", {})
    try:
        http, admin = _client(fields)
        async with http:
            name, service = await _create(http, "texts")
            path = f"/compute/functions/texts/{service}"
            ok = await _invoke(http, path, {"card": SECRET}, 200)
            failed = await _invoke(http, path, {"card": SECRET, "fail": True}, 500)
            patched = await http.patch(
                f"/compute/compute-assets/texts/{service}", json={"timeout": 5000}
            )
            assert patched.status_code == 200, patched.text
            back = await http.put(f"{path}/aliases/production", json={"revision_number": 1})
            assert back.status_code == 200, back.text
            gone = await http.delete(path)
            assert gone.status_code == 200, gone.text
    finally:
        log = await _stop(proc)

    lines = [line for line in log.splitlines() if " computebus.invocation: " in line]
    assert len(lines) == 2, log
    (ok_line,) = [line for line in lines if ok in line]
    (failed_line,) = [line for line in lines if failed in line]
    fn = f"texts/{name} ({service}) rev 1 sync over http"
    assert " INFO " in ok_line and f"{fn}: succeeded 200 in " in ok_line, ok_line
    assert " WARNING " in failed_line and f"{fn}: failed 500 function_error in " in failed_line
    changes = [
        line.split(" computebus.changes: ", 1)[1]
        for line in log.splitlines()
        if " computebus.changes: " in line
    ]
    assert [c.split(" by token ")[0] for c in changes] == [
        f"function texts/{name} ({service}) created, revision 1",
        f"function texts/{name} ({service}) updated, revision 2 promoted",
        f"function texts/{name} ({service}) rolled back: alias production 2 -> 1",
        f"function texts/{name} ({service}) deleted",
    ]
    for secret in (SECRET, ENV_SECRET, admin):
        assert secret not in log


async def test_a_bad_log_format_or_level_is_refused_naming_it() -> None:
    for name, value, allowed in (
        ("COMPUTEBUS_LOG_FORMAT", "xml", "text, json"),
        ("COMPUTEBUS_LOG_LEVEL", "chatty", "DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "executor.cli",
            "serve",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, name: value},
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 2 and out == b""
        assert err.decode().strip().splitlines() == [
            f"computebus: {name}={value!r}: must be one of {allowed}"
        ]
