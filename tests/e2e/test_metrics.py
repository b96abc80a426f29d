"""Metrics from every role, read from the real stack's /metrics: each counter moves by exactly
the invocations made, per function and code, over HTTP, NATS and Async."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
from nats.aio.client import Client

from tests.e2e.bodies import unique
from tests.e2e.scrapes import (
    Samples,
    scrape,
    submit_async,
    until_running,
    value,
    wait_for_async,
    worker_metrics_url,
)
from tests.helpers import MakeFunction

# Fails when asked to; sleeps when asked to (the timeout case).
FLAKY = """
exports.handler = async (event) => {
  if (event && event.fail) throw new Error("asked to fail");
  if (event && event.sleep) await new Promise((r) => setTimeout(r, event.sleep));
  return { ok: true };
};
"""


async def test_every_invocation_is_counted_once_per_role_by_function_and_code(
    http: httpx.AsyncClient, nc: Client, make_function: MakeFunction
) -> None:
    fn = await make_function(
        {"index.js": FLAKY},
        collection=unique(),
        timeout=500,
        async_config={"max_attempts": 1, "backoff_ms": 10},
    )
    other = await make_function({"index.js": FLAKY}, collection=fn.collection)
    url = await worker_metrics_url(nc)
    api0, worker0 = await scrape(http, url)
    ids: list[str] = []

    for _ in range(3):
        assert (await http.post(f"{fn.path}/invoke", json={"payload": {}})).status_code == 200
    failed = await http.post(f"{fn.path}/invoke", json={"payload": {"fail": True}})
    assert failed.status_code == 500, failed.text
    late = await http.post(f"{fn.path}/invoke", json={"payload": {"sleep": 2000}})
    assert late.status_code == 504, late.text
    assert (await http.post(f"{other.path}/invoke", json={"payload": {}})).status_code == 200
    assert (await http.post("/compute/functions/nope/no-such/invoke", json={})).status_code == 404
    for _ in range(2):
        reply = await nc.request(fn.subject, b"{}", timeout=10)
        assert json.loads(reply.data) == {"ok": True}
    for payload in ({}, {"fail": True}):
        submitted = await http.post(
            f"{fn.path}/invoke", json={"payload": payload, "invocation_type": "Async"}
        )
        assert submitted.status_code == 202, submitted.text
        ids.append(submitted.json()["body"]["invocation_id"])
    await wait_for_async(http, fn, ids)
    await asyncio.sleep(0.2)  # the dead letter is written after the final record

    api1, worker1 = await scrape(http, url)

    def api_moved(**labels: str) -> float:
        name = "computebus_api_invocations_total"
        return value(api1, name, **labels) - value(api0, name, **labels)

    def worker_moved(name: str, **labels: str) -> float:
        full = f"computebus_worker_{name}"
        return value(worker1, full, **labels) - value(worker0, full, **labels)

    mine = {"collection": fn.collection, "function": fn.service}
    assert api_moved(**mine, mode="sync", code="ok", revision="1") == 3
    assert api_moved(**mine, mode="sync", code="function_error") == 1
    assert api_moved(**mine, mode="sync", code="timeout") == 1
    assert api_moved(**mine, mode="async", code="accepted") == 2
    assert api_moved(collection=other.collection, function=other.service, code="ok") == 1
    assert api_moved(collection="", function="", code="function_not_found") == 1
    seconds = "computebus_api_invoke_seconds_count"
    assert value(api1, seconds, **mine, mode="sync") - value(api0, seconds, **mine) == 5

    assert worker_moved("invocations_total", **mine, via="http", code="ok", revision="1") == 3
    assert worker_moved("invocations_total", **mine, via="http", code="function_error") == 1
    assert worker_moved("invocations_total", **mine, via="http", code="timeout") == 1
    assert worker_moved("invocations_total", **mine, via="nats", code="ok") == 2
    assert worker_moved("invocations_total", **mine, via="async", code="ok") == 1
    assert worker_moved("invocations_total", **mine, via="async", code="function_error") == 1
    assert worker_moved("errors_total", **mine) == 3
    assert worker_moved("handler_seconds_count", **mine, via="http") == 5
    assert worker_moved("wait_seconds_count", **mine, via="async") == 2
    assert worker_moved("invocation_seconds_count", **mine) == 9
    assert worker_moved("dead_letters_total", **mine) == 1
    assert worker_moved("processes_killed_total", runtime="nodejs", reason="timeout") == 1
    assert worker_moved("cold_starts_total", runtime="nodejs") >= 1
    assert value(worker1, "computebus_worker_processes", runtime="nodejs", state="warm") >= 1
    assert value(worker1, "computebus_worker_capacity") > 0
    assert value(worker1, "computebus_nats_connected") == 1
    info = [labels for (name, labels), _ in worker1.items() if name == "computebus_worker_info"]
    assert info and dict(info[0])["isolation"]

    assert value(api1, "computebus_bus_read_ok") == 1
    assert value(api1, "computebus_monitor_stream_messages", collection=fn.collection) >= 9
    assert value(api1, "computebus_dead_letters_stored", collection=fn.collection) == 1
    assert ("computebus_async_oldest_age_seconds", ()) in api1  # its value: the next test
    assert value(api1, "computebus_nats_connected") == 1


# Crashes its process when asked to (a lost process is retryable for Async).
CRASHY = """
exports.handler = async (event) => {
  if (event && event.crash) process.exit(3);
  if (event && event.sleep) await new Promise((r) => setTimeout(r, event.sleep));
  return { ok: true };
};
"""


async def test_throttles_crashes_retries_and_expiries_are_counted(
    http: httpx.AsyncClient, nc: Client, make_function: MakeFunction
) -> None:
    fn = await make_function(
        {"index.js": CRASHY},
        collection=unique(),
        limits={"max_concurrency": 1},
        async_config={"max_attempts": 2, "backoff_ms": 10},
    )
    url = await worker_metrics_url(nc)
    _, worker0 = await scrape(http, url)

    slow = asyncio.ensure_future(http.post(f"{fn.path}/invoke", json={"payload": {"sleep": 1500}}))
    await until_running(url, worker0)  # the slow call holds the function's one slot
    refused = await http.post(f"{fn.path}/invoke", json={"payload": {}})
    assert refused.status_code in (429, 503), refused.text
    assert (await slow).status_code == 200
    crashed = await http.post(f"{fn.path}/invoke", json={"payload": {"crash": True}})
    assert crashed.status_code == 500, crashed.text
    past = str(int(time.time() * 1000) - 1000)
    ids = await submit_async(http, fn, [({"crash": True}, {}), ({}, {"Compute-Deadline": past})])
    await wait_for_async(http, fn, ids)
    await asyncio.sleep(0.2)
    _, worker1 = await scrape(http, url)

    def moved(name: str, **labels: str) -> float:
        full = f"computebus_worker_{name}"
        return value(worker1, full, **labels) - value(worker0, full, **labels)

    mine = {"collection": fn.collection, "function": fn.service}
    assert moved("throttles_total", **mine) == 1
    assert moved("invocations_total", **mine, via="http", code="function_error") == 1
    # The crash over HTTP, then the Async one twice (its first run is retried).
    assert moved("processes_killed_total", runtime="nodejs", reason="crash") == 3
    assert moved("async_retries_total", **mine) == 1
    assert moved("dead_letters_total", **mine) == 2  # the crash for good, and the expired
    assert moved("async_expired_total", **mine) == 1
    # A process for each run after a crash: the Async crash, then its retry.
    assert moved("cold_start_seconds_count", runtime="nodejs") == 2


async def test_the_async_queue_is_seen_while_it_holds_work(
    http: httpx.AsyncClient, nc: Client, make_function: MakeFunction
) -> None:
    """Queue depth, oldest age, ack pending and the worker's Async in flight, read mid-run."""
    fn = await make_function(
        {"index.js": FLAKY}, collection=unique(), limits={"max_concurrency": 1}
    )
    url = await worker_metrics_url(nc)
    ids = []
    for _ in range(3):
        submitted = await http.post(
            f"{fn.path}/invoke", json={"payload": {"sleep": 700}, "invocation_type": "Async"}
        )
        assert submitted.status_code == 202, submitted.text
        ids.append(submitted.json()["body"]["invocation_id"])
    seen: tuple[Samples, Samples] | None = None
    for _ in range(100):
        api, worker = await scrape(http, url)
        if value(worker, "computebus_worker_async_in_flight") >= 1:
            seen = api, worker
            break
        await asyncio.sleep(0.02)
    assert seen is not None, "no Async invocation was seen running"
    api, _ = seen
    assert value(api, "computebus_async_queue_messages") >= 2  # the running one is still there
    assert value(api, "computebus_async_ack_pending") >= 1
    assert value(api, "computebus_async_oldest_age_seconds") > 0
    await wait_for_async(http, fn, ids)
    api, worker = await scrape(http, url)
    assert value(worker, "computebus_worker_async_in_flight") == 0
    assert value(api, "computebus_monitor_stream_bytes", collection=fn.collection) > 0
