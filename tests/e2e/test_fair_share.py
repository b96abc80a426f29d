"""One function cannot take a worker from the others: its invocations in flight are bounded by
its own ``limits.max_concurrency``, waiting for one of its processes ends at the call's timeout,
and the waiting calls of a deleted function are dropped."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import nats.errors
import pytest
from nats.aio.client import Client

from tests.helpers import Fn, MakeFunction, function_body

HANG = {"index.py": "import time\ndef handler(event, context):\n    time.sleep(3600)\n"}
ECHO = {"index.js": "exports.handler = async (e) => e;"}


async def code_of(nc: Client, fn: Fn, timeout: float) -> str:
    """The HTTP status a NATS invocation answered with ("200" for a result)."""
    try:
        reply = await nc.request(fn.subject, b"{}", timeout=timeout)
    except nats.errors.TimeoutError:
        return "no answer"
    headers = reply.headers or {}
    return headers.get("Nats-Service-Error-Code", "200")


async def test_a_flooded_function_leaves_the_worker_to_the_others(
    http: httpx.AsyncClient, nc: Client, make_function: MakeFunction
) -> None:
    hanging = await make_function(
        HANG, runtime="python", timeout=2000, limits={"max_concurrency": 20}
    )
    victim = await make_function(ECHO)
    started = time.monotonic()
    flood = [asyncio.create_task(code_of(nc, hanging, 15)) for _ in range(40)]
    await asyncio.sleep(0.3)
    for i in range(10):  # served at once while the flood waits
        t = time.monotonic()
        answer = await http.post(f"{victim.path}/invoke", json={"payload": i})
        assert answer.json() == {"body": i}, answer.text
        assert time.monotonic() - t < 1.0
    codes = Counter(await asyncio.gather(*flood))
    # 20 admitted (4 running, 16 waiting): every one ends at its own timeout, none waits for
    # another's; the 20 past the function's limit were refused at once.
    assert codes == {"504": 20, "429": 20}, codes
    assert time.monotonic() - started < 2 * 2.0 + 1.5


async def test_the_waiting_calls_of_a_deleted_function_are_dropped(
    http: httpx.AsyncClient, nc: Client, make_function: MakeFunction
) -> None:
    hanging = await make_function(HANG, runtime="python", timeout=6000)
    calls = [asyncio.create_task(code_of(nc, hanging, 15)) for _ in range(10)]
    await asyncio.sleep(1.0)  # 4 running, 6 waiting for one of the 4 processes
    deleted = time.monotonic()
    assert (await http.delete(hanging.path)).status_code in (200, 204)
    done, _ = await asyncio.wait(calls, timeout=3.0)
    early = Counter(task.result() for task in done)
    assert early["404"] == 6, early
    assert time.monotonic() - deleted < 3.5
    await asyncio.gather(*calls)


@pytest.mark.parametrize("value", [0, 1001, "many"])
async def test_max_concurrency_is_checked(http: httpx.AsyncClient, value: object) -> None:
    body = function_body(ECHO, limits={"max_concurrency": value})
    response = await http.post("/compute/functions", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["details"][0]["path"] == "/limits/max_concurrency"


async def test_max_concurrency_is_kept_shown_and_changed(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function(ECHO, limits={"max_concurrency": 5})
    shown = (await http.get(fn.path)).json()["body"]
    assert shown["limits"] == {"max_concurrency": 5}
    patched = await http.patch(fn.path, json={"limits": {"max_concurrency": 7}})
    assert patched.status_code == 200, patched.text
    assert (await http.get(fn.path)).json()["body"]["limits"] == {"max_concurrency": 7}


async def test_an_expensive_schema_stalls_only_its_own_function(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    defs: dict[str, object] = {
        f"d{i}": {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}, {"$ref": f"#/$defs/d{i + 1}"}]}
        for i in range(30)
    }
    defs["d30"] = {"type": "object"}
    fanning = await make_function(
        ECHO, timeout=2000, schema={"input": {"$defs": defs, "$ref": "#/$defs/d0"}}
    )
    unique = await make_function(ECHO, schema={"input": {"type": "array", "uniqueItems": True}})
    victim = await make_function(ECHO)
    stuck = asyncio.create_task(http.post(f"{fanning.path}/invoke", json={"payload": {}}))
    await asyncio.sleep(0.2)
    for i in range(5):  # answered while the other function's validation runs
        t = time.monotonic()
        assert (await http.post(f"{victim.path}/invoke", json={"payload": i})).json() == {"body": i}
        assert time.monotonic() - t < 1.0
    response = await stuck
    assert response.status_code == 504, response.text
    assert "validating the input" in response.json()["error"]
    many = [{"a": i} for i in range(3000)]
    t = time.monotonic()
    checked = await http.post(f"{unique.path}/invoke", json={"payload": many})
    assert checked.status_code == 200, checked.text[:200]
    assert time.monotonic() - t < 2.0


async def test_async_floods_of_other_functions_do_not_queue_another(
    http: httpx.AsyncClient, nc: Client, make_function: MakeFunction
) -> None:
    # Other tests' Async work on this shared stack would take the newcomers' reserve too.
    js = nc.jetstream()
    for _ in range(300):
        if (await js.stream_info("COMPUTEBUS_ASYNC")).state.messages == 0:
            break
        await asyncio.sleep(0.1)
    hang_ms = 5000
    floods = [
        await make_function(
            HANG, runtime="python", timeout=hang_ms, async_config={"max_attempts": 1}
        )
        for _ in range(2)
    ]
    victim = await make_function(ECHO)
    async_call = {"payload": 0, "invocation_type": "Async"}
    sent = [http.post(f"{fn.path}/invoke", json=async_call) for fn in floods for _ in range(48)]
    assert {r.status_code for r in await asyncio.gather(*sent)} == {202}
    await asyncio.sleep(0.5)  # the floods hold every slot they may take
    submitted_ms = time.time() * 1000
    accepted = await http.post(f"{victim.path}/invoke", json=async_call)
    assert accepted.status_code == 202, accepted.text
    invocation_id = accepted.json()["body"]["invocation_id"]
    while True:
        record = (await http.get(f"{victim.path}/invocations/{invocation_id}")).json()["body"]
        if record["status"] == "succeeded":
            break
        await asyncio.sleep(0.05)
    # It started without waiting for any flood call to end (each holds its slot for hang_ms):
    # the floods' 96 calls queued in front of it did not stand in its way.
    assert record["started"] - submitted_ms < hang_ms, record
    for fn in floods:
        await http.delete(fn.path)
