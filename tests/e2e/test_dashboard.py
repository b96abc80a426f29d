"""The Grafana dashboard and the Prometheus scrape config in deploy/ match what runs: every metric
the dashboard queries is one the API or a worker of the real stack serves (with the suffix its
type gives it, counters and histograms under rate or increase, quantiles over ``le``), and the
scrape targets are compose.yaml's APIs and workers on their ports."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml
from nats.aio.client import Client
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.bodies import unique
from tests.e2e.scrapes import (
    samples,
    submit_async,
    until_running,
    wait_for_async,
    worker_metrics_url,
)
from tests.helpers import MakeFunction, Stack, second_api

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "computebus.json"
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
PROMETHEUS = ROOT / "deploy" / "prometheus.yml"
COMPOSE = ROOT / "compose.yaml"

METRIC = re.compile(r"computebus_[a-z_]+")
# What each family type's samples are called: the name plus one of these.
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "gauge": ("",),
}

FLAKY = """
exports.handler = async (event) => {
  if (event && event.sleep) await new Promise((r) => setTimeout(r, event.sleep));
  if (event && event.fail) throw new Error("asked to fail");
  return { ok: true };
};
"""


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def expressions(board: dict[str, Any]) -> list[str]:
    """The PromQL of every panel's queries and every query variable."""
    found = [t["expr"] for p in panels(board["panels"]) for t in p.get("targets", [])]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            found.append(query["query"] if isinstance(query, dict) else query)
    return found


def families(text: str) -> dict[str, str]:
    """Sample name (as PromQL spells it) -> its family's type, for every family served, samples
    or not yet."""
    named: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        for suffix in SUFFIXES.get(family.type, ("",)):
            named[family.name + suffix] = family.type
    return named


def with_samples(text: str) -> set[str]:
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def test_the_dashboard_is_importable_with_its_variables() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36  # Grafana 10+
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("collection", "function"):
        assert variables[name]["type"] == "query" and variables[name]["includeAll"], name
        assert variables[name]["datasource"]["uid"] == "${datasource}"
    ids = [p["id"] for p in panels(board["panels"])]
    assert len(ids) == len(set(ids))
    for panel in panels(board["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"])
    used = set(re.findall(r"\$(\w+)", " ".join(expressions(board))))
    assert used - {"__rate_interval", "__range", "__interval"} <= set(variables)


def test_the_promql_suits_each_metrics_type() -> None:
    """Counters and histogram series only under rate or increase, gauges never; every quantile
    aggregates over ``le``."""
    for expr in expressions(dashboard()):
        if expr.startswith("label_values("):
            continue
        for match in METRIC.finditer(expr):
            name = match.group()
            before = expr[: match.start()]
            windowed = re.search(r"\b(rate|increase)\($", before) is not None
            is_counter = name.endswith(("_total", "_bucket", "_count", "_sum"))
            assert windowed == is_counter, (name, expr)
        if "_bucket" in expr:
            assert expr.startswith("histogram_quantile("), expr
            assert re.search(r"sum by \(le\b[^)]*\) \(rate\(computebus_\w+_bucket", expr), expr


async def test_every_metric_the_dashboard_queries_is_served(
    http: httpx.AsyncClient, nc: Client, make_function: MakeFunction
) -> None:
    queried = {m for expr in expressions(dashboard()) for m in METRIC.findall(expr)}
    assert len(queried) > 30, queried

    # Series for every path and every event the dashboard shows: HTTP, NATS and Async runs, a
    # timeout (a killed process), a throttle, an Async retry, dead letter and expiry.
    fn = await make_function(
        {"index.js": FLAKY},
        collection=unique(),
        timeout=500,
        limits={"max_concurrency": 1},
        async_config={"max_attempts": 2, "backoff_ms": 10},
    )
    assert (await http.post(f"{fn.path}/invoke", json={"payload": {}})).status_code == 200
    late = await http.post(f"{fn.path}/invoke", json={"payload": {"sleep": 2000}})
    assert late.status_code == 504, late.text
    assert json.loads((await nc.request(fn.subject, b"{}", timeout=10)).data) == {"ok": True}
    url = await worker_metrics_url(nc)
    async with httpx.AsyncClient() as plain:
        before = samples((await plain.get(url)).text)
    busy = asyncio.ensure_future(nc.request(fn.subject, b'{"sleep": 400}', timeout=10))
    await until_running(url, before)
    refused = await nc.request(fn.subject, b"{}", timeout=10)
    assert refused.headers, refused.data  # an error answer: the function is at its limit
    await busy
    past = str(int(time.time() * 1000) - 1000)
    calls = [({}, {}), ({"fail": True}, {}), ({}, {"Compute-Deadline": past})]
    ids = await submit_async(http, fn, calls)
    await wait_for_async(http, fn, ids)

    # The retry's second run and the dead letter come after the first failed record: scrape
    # until every queried series is there, or the deadline.
    deadline = time.monotonic() + 10
    while True:
        api, worker = await scrape(http, nc)
        served = families(api) | families(worker)
        empty = sorted(queried - with_samples(api) - with_samples(worker))
        if not empty or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    missing = sorted(queried - set(served))
    assert missing == [], f"the dashboard queries metrics nobody serves: {missing}"
    assert empty == [], f"served but with no series after every kind of invocation: {empty}"


async def scrape(http: httpx.AsyncClient, nc: Client) -> tuple[str, str]:
    api = await http.get("/metrics")
    assert api.status_code == 200, api.text
    async with httpx.AsyncClient() as plain:
        worker = await plain.get(await worker_metrics_url(nc))
    assert worker.status_code == 200, worker.text
    return api.text, worker.text


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE.read_text())["services"]
    return found


def jobs() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load(PROMETHEUS.read_text())
    return {job["job_name"]: job for job in config["scrape_configs"]}


def targets(job: dict[str, Any]) -> set[str]:
    return {t for static in job["static_configs"] for t in static["targets"]}


def test_the_scrape_config_targets_compose_apis_and_workers() -> None:
    composed = services()
    apis = {n: s for n, s in composed.items() if n.startswith("api-")}
    workers = {n: s for n, s in composed.items() if n.startswith("worker-")}
    assert apis and workers
    scrape = jobs()
    api_job, worker_job = scrape["computebus-api"], scrape["computebus-worker"]
    assert targets(api_job) == {
        f"{n}:{s['environment']['COMPUTEBUS_PORT']}" for n, s in apis.items()
    }
    assert api_job["metrics_path"] == "/metrics"
    for name, service in apis.items():
        # /metrics answers Prometheus without a token only because compose says so.
        assert service["environment"]["COMPUTEBUS_OPS_PUBLIC"] == "true" or "authorization" in (
            api_job
        ), name
    wanted = set()
    for name, service in workers.items():
        env = service["environment"]
        assert env["COMPUTEBUS_WORKER_METRICS_HOST"] == "0.0.0.0", name
        wanted.add(f"{name}:{env['COMPUTEBUS_WORKER_METRICS_PORT']}")
    assert targets(worker_job) == wanted


def test_the_observability_profile_mounts_what_deploy_holds() -> None:
    composed = services()
    prometheus, grafana = composed["prometheus"], composed["grafana"]
    for service in (prometheus, grafana):
        assert service["profiles"] == ["observability"]  # `docker compose up` runs neither
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("./"))
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "computebus.yaml").read_text())
    folder = provider["providers"][0]["options"]["path"]
    assert mounts["./deploy/grafana/computebus.json"] == f"{folder}/computebus.json"
    source = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yaml").read_text())
    assert source["datasources"][0]["type"] == "prometheus"
    assert source["datasources"][0]["url"] == "http://prometheus:9090"


async def test_a_token_with_a_scope_on_nothing_may_scrape_a_guarded_api(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    """What deploy/prometheus.yml tells an operator whose API asks for a token."""
    made = await http.post(
        "/compute/tokens",
        json={"name": f"prometheus-{uuid.uuid4().hex[:6]}", "scopes": ["read:prometheus-only"]},
    )
    assert made.status_code == 201, made.text
    secret = made.json()["body"]["token"]
    async with second_api(stack, ops_public=False) as guarded:
        assert (await guarded.get("/metrics", headers={"Authorization": ""})).status_code == 401
        scraped = await guarded.get("/metrics", headers={"Authorization": f"Bearer {secret}"})
        assert scraped.status_code == 200, scraped.text
        assert "computebus_api_invocations" in scraped.text
