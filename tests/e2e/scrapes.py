"""Reading the roles' /metrics in tests: the samples of a scrape, and sums over labels."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from nats.aio.client import Client
from prometheus_client.parser import text_string_to_metric_families

from bus.workers import ping_workers
from tests.helpers import Fn

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


async def until_running(url: str, before: Samples | None = None) -> None:
    """Until the worker whose metrics are at ``url`` holds a handler process for a call: one
    more than in ``before`` (a scrape taken before the call), as other tests' work may run."""
    floor = value(before, "computebus_worker_in_flight") if before is not None else 0.0
    async with httpx.AsyncClient() as plain:
        for _ in range(250):
            now = samples((await plain.get(url)).text)
            if value(now, "computebus_worker_in_flight") >= floor + 1:
                return
            await asyncio.sleep(0.02)
    raise AssertionError("no invocation was seen running")


async def submit_async(
    http: httpx.AsyncClient, fn: Fn, calls: list[tuple[Any, dict[str, str]]]
) -> list[str]:
    """Submit each (payload, headers) as an Async invocation; their ids."""
    ids = []
    for payload, headers in calls:
        submitted = await http.post(
            f"{fn.path}/invoke",
            json={"payload": payload, "invocation_type": "Async"},
            headers=headers,
        )
        assert submitted.status_code == 202, submitted.text
        ids.append(submitted.json()["body"]["invocation_id"])
    return ids
