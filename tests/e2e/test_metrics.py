"""Metrics from every role, read from the real stack's /metrics: each counter moves by exactly
the invocations made, per function and code, over HTTP, NATS and Async."""

from __future__ import annotations

import asyncio
import json

import httpx
from nats.aio.client import Client
from prometheus_client.parser import text_string_to_metric_families

from bus.workers import ping_workers
from tests.e2e.bodies import unique
from tests.helpers import Fn, MakeFunction

# Fails when asked to; sleeps when asked to (the timeout case).
FLAKY = """
exports.handler = async (event) => {
  if (event && event.fail) throw new Error("asked to fail");
  if (event && event.sleep) await new Promise((r) => setTimeout(r, event.sleep));
  return { ok: true };
};
"""

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in found.items() if n == name and wanted <= set(have))


async def worker_metrics_url(nc: Client) -> str:
    infos = await ping_workers(nc)
    urls = [info.metrics for info in infos if info.metrics]
    assert len(urls) == 1, infos
    return urls[0]


async def scrape(http: httpx.AsyncClient, url: str) -> tuple[Samples, Samples]:
    api = await http.get("/metrics")
    assert api.status_code == 200, api.text
    async with httpx.AsyncClient() as plain:
        worker = await plain.get(url)
    assert worker.status_code == 200, worker.text
    assert worker.headers["content-type"].startswith("text/plain")
    return samples(api.text), samples(worker.text)


async def wait_for_async(http: httpx.AsyncClient, fn: Fn, ids: list[str]) -> None:
    for invocation_id in ids:
        for _ in range(200):
            response = await http.get(f"{fn.path}/invocations/{invocation_id}")
            if response.status_code == 200 and response.json()["body"]["status"] in (
                "succeeded",
                "failed",
            ):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"{invocation_id} did not finish")


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
    assert value(api1, "computebus_async_oldest_age_seconds") >= 0
    assert value(api1, "computebus_nats_connected") == 1
