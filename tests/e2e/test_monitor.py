"""Monitor records: what one holds, listing and filtering them, result events, and their TTL."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
from nats.aio.client import Client
from nats.aio.msg import Msg

from bus import subjects
from tests.helpers import MakeFunction, wait_for_record

NODE = {
    "index.js": r"""
exports.handler = async (event) => {
  console.log('event', JSON.stringify(event));
  if (event && event.fail) throw new Error('asked to fail');
  return { seen: event };
};
""",
}
PYTHON = {
    "index.py": r"""
import sys


def handler(event, context):
    print("event", event)
    print("warn", file=sys.stderr)
    if isinstance(event, dict) and event.get("fail"):
        raise RuntimeError("asked to fail")
    return {"seen": event}
""",
}


async def invoke(http: httpx.AsyncClient, path: str, payload: Any) -> httpx.Response:
    return await http.post(f"{path}/invoke", json={"payload": payload})


async def test_record_of_a_success(http: httpx.AsyncClient, make_function: MakeFunction) -> None:
    fn = await make_function(PYTHON, runtime="python", store_payload=True)
    before = int(time.time() * 1000)
    response = await invoke(http, fn.path, {"n": 1})
    after = int(time.time() * 1000)
    assert response.status_code == 200, response.text
    invocation_id = response.headers["x-invocation-id"]
    record = await wait_for_record(http, fn, invocation_id)
    assert record["invocation_id"] == invocation_id
    assert record["collection_topic"] == fn.collection
    assert record["service"] == fn.service
    assert record["revision"] == 1
    assert record["status"] == "succeeded"
    assert record["invocation_type"] == "RequestResponse"
    assert before <= record["started"] <= after
    assert 0 < record["duration_ms"] < after - before + 1
    assert record["logs"] == "event {'n': 1}\nwarn\n"
    assert record["logs_truncated"] is False
    assert record["input"] == {"n": 1}
    assert record["output"] == {"seen": {"n": 1}}
    for absent in ("error_code", "error_message", "error_details"):
        assert absent not in record


async def test_record_of_a_failure(http: httpx.AsyncClient, make_function: MakeFunction) -> None:
    fn = await make_function(NODE, store_payload=True)
    response = await invoke(http, fn.path, {"fail": True})
    assert response.status_code == 500, response.text
    record = await wait_for_record(http, fn, response.headers["x-invocation-id"])
    assert record["status"] == "failed"
    assert record["error_code"] == "function_error"
    assert "asked to fail" in record["error_message"]
    assert record["error_details"] == [{"type": "Error", "message": "asked to fail"}]
    assert record["input"] == {"fail": True}
    assert "output" not in record
    assert record["logs"].startswith('event {"fail":true}\n')
    assert "Error: asked to fail" in record["logs"]
    assert record["duration_ms"] > 0


async def test_record_of_an_invalid_input(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function(NODE, schema={"input": {"type": "object"}})
    response = await invoke(http, fn.path, [1])
    assert response.status_code == 400, response.text
    record = await wait_for_record(http, fn, response.headers["x-invocation-id"])
    assert record["status"] == "failed"
    assert record["error_code"] == "invalid_input"
    assert record["error_details"][0]["path"] == "/"
    assert record["logs"] == ""


async def test_payload_is_kept_only_when_asked(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function(PYTHON, runtime="python", store_payload=False)
    ok = await invoke(http, fn.path, {"secret": 1})
    failed = await invoke(http, fn.path, {"fail": True})
    assert ok.status_code == 200, ok.text
    assert failed.status_code == 500, failed.text
    for response in (ok, failed):
        record = await wait_for_record(http, fn, response.headers["x-invocation-id"])
        assert "input" not in record
        assert "output" not in record
        assert record["logs"]  # logs are kept either way

    fn = await make_function(PYTHON, runtime="python", store_payload=True)
    response = await invoke(http, fn.path, '"a string"')
    assert response.status_code == 200, response.text
    record = await wait_for_record(http, fn, response.headers["x-invocation-id"])
    assert record["input"] == "a string"
    assert record["output"] == {"seen": "a string"}


async def test_payloads_too_big_for_one_record_are_left_out(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function({"index.js": "exports.handler = async (e) => e;"}, store_payload=True)
    payload = {"s": "x" * (4 * 1024 * 1024)}  # input plus output exceed one bus message
    response = await invoke(http, fn.path, payload)
    assert response.status_code == 200, response.text[:300]
    assert response.json()["body"] == payload
    record = await wait_for_record(http, fn, response.headers["x-invocation-id"])
    assert record["status"] == "succeeded"
    assert record["payload_omitted"] is True
    assert "input" not in record
    assert "output" not in record
    small = await invoke(http, fn.path, {"s": "x"})
    record = await wait_for_record(http, fn, small.headers["x-invocation-id"])
    assert record["payload_omitted"] is False
    assert record["input"] == {"s": "x"}


async def test_nats_invocations_are_recorded(
    http: httpx.AsyncClient, nc: Client, make_function: MakeFunction
) -> None:
    fn = await make_function(NODE, store_payload=True)
    reply = await nc.request(fn.subject, b"[1,2]", timeout=10)
    assert json.loads(reply.data) == {"seen": [1, 2]}
    assert reply.headers is not None
    record = await wait_for_record(http, fn, reply.headers["Compute-Invocation-Id"])
    assert record["status"] == "succeeded"
    assert record["input"] == [1, 2]
    assert record["output"] == {"seen": [1, 2]}


async def test_listing_filtering_and_paging(
    http: httpx.AsyncClient, nc: Client, make_function: MakeFunction
) -> None:
    fn = await make_function(NODE)
    ids: list[str] = []
    failed: list[str] = []
    for n, fail in enumerate([False, True, False, False, True]):
        response = await invoke(http, fn.path, {"n": n, "fail": fail})
        assert response.status_code == (500 if fail else 200), response.text
        invocation_id = response.headers["x-invocation-id"]
        await wait_for_record(http, fn, invocation_id)
        ids.append(invocation_id)
        if fail:
            failed.append(invocation_id)
    newest_first = ids[::-1]

    response = await http.get(f"{fn.path}/invocations")
    assert response.status_code == 200, response.text
    listed = response.json()["body"]
    assert listed["results_total"] == 5
    assert [r["invocation_id"] for r in listed["results"]] == newest_first
    assert {r["status"] for r in listed["results"]} == {"succeeded", "failed"}

    response = await http.get(f"{fn.path}/invocations", params={"status": "failed"})
    listed = response.json()["body"]
    assert listed["results_total"] == 2
    assert [r["invocation_id"] for r in listed["results"]] == failed[::-1]
    assert all(
        r["status"] == "failed" and r["error_code"] == "function_error" for r in listed["results"]
    )

    response = await http.get(f"{fn.path}/invocations", params={"status": "succeeded"})
    assert response.json()["body"]["results_total"] == 3

    response = await http.get(f"{fn.path}/invocations", params={"limit": 2, "offset": 1})
    listed = response.json()["body"]
    assert listed["results_total"] == 5
    assert [r["invocation_id"] for r in listed["results"]] == newest_first[1:3]

    response = await http.get(f"{fn.path}/invocations", params={"limit": 10, "offset": 4})
    assert [r["invocation_id"] for r in response.json()["body"]["results"]] == newest_first[4:]

    response = await http.get(f"{fn.path}/invocations", params={"offset": 5})
    assert response.json()["body"] == {"results": [], "results_total": 5}

    # Listing leaves no consumer behind on the monitor stream.
    js = nc.jetstream()
    stream = subjects.monitor_stream(fn.collection)
    consumers = len(await js.consumers_info(stream))
    for _ in range(3):
        assert (await http.get(f"{fn.path}/invocations")).status_code == 200
    assert len(await js.consumers_info(stream)) == consumers

    for bad in ({"status": "bogus"}, {"limit": 0}, {"limit": "x"}, {"offset": -1}):
        response = await http.get(f"{fn.path}/invocations", params=bad)
        assert response.status_code == 400, (bad, response.text)
        assert response.json()["code"] == "invalid_request"


async def test_listing_a_function_without_records(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function(NODE)
    response = await http.get(f"{fn.path}/invocations")
    assert response.status_code == 200, response.text
    assert response.json()["body"] == {"results": [], "results_total": 0}


async def test_unknown_invocation_is_404(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function(NODE)
    response = await invoke(http, fn.path, 1)
    known = response.headers["x-invocation-id"]
    await wait_for_record(http, fn, known)
    for unknown in ("0" * 32, "not.a.token", "*"):
        response = await http.get(f"{fn.path}/invocations/{unknown}")
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "not_found"
    # A record is only found under its own function.
    other = await make_function(NODE)
    response = await http.get(f"{other.path}/invocations/{known}")
    assert response.status_code == 404, response.text


async def test_result_events(
    http: httpx.AsyncClient, nc: Client, make_function: MakeFunction
) -> None:
    fn = await make_function(NODE, store_payload=False)
    received: asyncio.Queue[Msg] = asyncio.Queue()

    async def on_msg(msg: Msg) -> None:
        await received.put(msg)

    sub = await nc.subscribe(f"{fn.subject}.result.*", cb=on_msg)
    await nc.flush()
    try:
        good = await invoke(http, fn.path, {"n": 1})
        bad = await invoke(http, fn.path, {"fail": True})
        assert good.status_code == 200 and bad.status_code == 500
        events = [await asyncio.wait_for(received.get(), 5) for _ in range(2)]
    finally:
        await sub.unsubscribe()

    by_subject = {msg.subject: json.loads(msg.data) for msg in events}
    succeeded = by_subject[f"{fn.subject}.result.succeeded"]
    failed = by_subject[f"{fn.subject}.result.failed"]
    assert succeeded["invocation_id"] == good.headers["x-invocation-id"]
    assert succeeded["status"] == "succeeded"
    assert succeeded["service"] == fn.service
    assert succeeded["collection_topic"] == fn.collection
    assert "output" not in succeeded
    assert failed["invocation_id"] == bad.headers["x-invocation-id"]
    assert failed["status"] == "failed"
    assert failed["error_code"] == "function_error"
    # The event is the stored record.
    assert failed == await wait_for_record(http, fn, bad.headers["x-invocation-id"])


async def test_records_expire_after_their_ttl(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    short = await make_function(NODE, ttl=1000)
    long = await make_function(NODE, ttl=600_000)
    ids = {}
    for fn in (short, long):
        response = await invoke(http, fn.path, 1)
        assert response.status_code == 200, response.text
        ids[fn.service] = response.headers["x-invocation-id"]
        record = await wait_for_record(http, fn, ids[fn.service])
        assert record["invocation_id"] == ids[fn.service]
    listed = (await http.get(f"{short.path}/invocations")).json()["body"]
    assert listed["results_total"] == 1

    deadline = time.monotonic() + 6
    while True:
        response = await http.get(f"{short.path}/invocations/{ids[short.service]}")
        if response.status_code == 404:
            break
        assert response.status_code == 200, response.text
        assert time.monotonic() < deadline, "the record outlived its TTL"
        await asyncio.sleep(0.2)
    listed = (await http.get(f"{short.path}/invocations")).json()["body"]
    assert listed == {"results": [], "results_total": 0}

    # The TTL is per function: the other one's record is still there.
    response = await http.get(f"{long.path}/invocations/{ids[long.service]}")
    assert response.status_code == 200, response.text
    assert (await http.get(f"{long.path}/invocations")).json()["body"]["results_total"] == 1
