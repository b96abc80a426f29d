"""W3C trace context end to end on the session stack: a caller's ``traceparent`` (over HTTP,
over a NATS request, on an Async message) reaches the handler's ``context`` and the monitor
record; without one, or with a malformed one, the invocation gets a fresh trace. The export of
spans over OTLP is in test_trace_export.py."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from typing import Any

import httpx
import pytest
from nats.aio.client import Client

from tests.helpers import Fn, MakeFunction, Stack, second_api, wait_for_record

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$")

CONTEXT_HANDLERS = {
    "python": {"index.py": "def handler(event, context):\n    return dict(context)\n"},
    "nodejs": {"index.js": "exports.handler = async (event, context) => context;\n"},
}


async def context_function(make_function: MakeFunction, runtime: str = "python") -> Fn:
    return await make_function(CONTEXT_HANDLERS[runtime], runtime=runtime)


def assert_continues(context: dict[str, Any], trace_id: str, caller_span: str | None) -> None:
    """The handler's context names the trace and a span of its own (the worker's handler span),
    not the caller's."""
    assert context["trace_id"] == trace_id, context
    matched = _TRACEPARENT.fullmatch(context["traceparent"])
    assert matched is not None, context
    assert matched.group(1) == trace_id
    assert matched.group(2) not in ("0" * 16, caller_span)


async def finished_record(
    http: httpx.AsyncClient, fn: Fn, invocation_id: str, timeout: float = 20.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        record = await wait_for_record(http, fn, invocation_id, timeout)
        if record["status"] in ("succeeded", "failed"):
            return record
        assert time.monotonic() < deadline, record
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("runtime", ["python", "nodejs"])
async def test_an_http_traceparent_reaches_the_handler_and_the_record(
    http: httpx.AsyncClient, make_function: MakeFunction, runtime: str
) -> None:
    fn = await context_function(make_function, runtime)
    response = await http.post(
        f"{fn.path}/invoke",
        json={"payload": {}},
        headers={"traceparent": TRACEPARENT, "tracestate": "congo=t61rcWkgMzE"},
    )
    assert response.status_code == 200, response.text
    context = response.json()["body"]
    assert_continues(context, TRACE_ID, PARENT_ID)
    assert context["tracestate"] == "congo=t61rcWkgMzE"
    record = await wait_for_record(http, fn, response.headers["X-Invocation-Id"])
    assert record["trace_id"] == TRACE_ID


async def test_without_a_traceparent_an_invocation_starts_a_fresh_trace(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await context_function(make_function)
    seen = set()
    for _ in range(2):
        response = await http.post(f"{fn.path}/invoke", json={"payload": {}})
        assert response.status_code == 200, response.text
        record = await wait_for_record(http, fn, response.headers["X-Invocation-Id"])
        trace_id = record["trace_id"]
        assert re.fullmatch(r"[0-9a-f]{32}", trace_id) and trace_id != "0" * 32
        assert_continues(response.json()["body"], trace_id, None)
        seen.add(trace_id)
    assert len(seen) == 2


@pytest.mark.parametrize(
    "malformed",
    [
        f"00-{TRACE_ID.upper()}-{PARENT_ID}-01",
        f"00-{'0' * 32}-{PARENT_ID}-01",
        f"ff-{TRACE_ID}-{PARENT_ID}-01",
        f"{TRACEPARENT}-extra",
        "hello",
    ],
)
async def test_a_malformed_traceparent_is_ignored_and_a_fresh_trace_started(
    http: httpx.AsyncClient, make_function: MakeFunction, malformed: str
) -> None:
    fn = await context_function(make_function)
    for invocation_type in ("RequestResponse", "Async"):
        response = await http.post(
            f"{fn.path}/invoke",
            json={"payload": {}, "invocation_type": invocation_type},
            headers={"traceparent": malformed, "tracestate": "a=1"},
        )
        assert response.status_code in (200, 202), response.text
        record = await finished_record(http, fn, response.headers["X-Invocation-Id"])
        assert record["status"] == "succeeded", record
        trace_id = record["trace_id"]
        assert re.fullmatch(r"[0-9a-f]{32}", trace_id) and trace_id not in (TRACE_ID, "0" * 32)
        assert_continues(record["output"], trace_id, PARENT_ID)
        assert record["output"]["tracestate"] == ""  # dropped with its traceparent


async def test_a_nats_request_traceparent_reaches_the_handler_and_the_record(
    http: httpx.AsyncClient, nc: Client, make_function: MakeFunction
) -> None:
    fn = await context_function(make_function)
    reply = await nc.request(fn.subject, b"{}", timeout=10, headers={"traceparent": TRACEPARENT})
    assert not (reply.headers or {}).get("Nats-Service-Error"), reply.data
    assert_continues(json.loads(reply.data), TRACE_ID, PARENT_ID)
    record = await wait_for_record(http, fn, (reply.headers or {})["Compute-Invocation-Id"])
    assert record["trace_id"] == TRACE_ID

    plain = await nc.request(fn.subject, b"{}", timeout=10)
    record = await wait_for_record(http, fn, (plain.headers or {})["Compute-Invocation-Id"])
    assert re.fullmatch(r"[0-9a-f]{32}", record["trace_id"]) and record["trace_id"] != TRACE_ID


async def test_an_async_traceparent_reaches_the_handler_and_every_record(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await context_function(make_function)
    response = await http.post(
        f"{fn.path}/invoke",
        json={"payload": {}, "invocation_type": "Async"},
        headers={"traceparent": TRACEPARENT},
    )
    assert response.status_code == 202, response.text
    invocation_id = response.json()["body"]["invocation_id"]
    queued = await wait_for_record(http, fn, invocation_id)
    assert queued["trace_id"] == TRACE_ID  # whichever record it is (queued, running, final)
    record = await finished_record(http, fn, invocation_id)
    assert record["status"] == "succeeded" and record["trace_id"] == TRACE_ID
    assert_continues(record["output"], TRACE_ID, PARENT_ID)


async def test_an_async_nats_message_traceparent_reaches_the_handler_and_the_record(
    http: httpx.AsyncClient, nc: Client, make_function: MakeFunction
) -> None:
    fn = await context_function(make_function)
    js = nc.jetstream()
    traced, plain = os.urandom(16).hex(), os.urandom(16).hex()
    await js.publish(
        f"{fn.subject}.async", b"{}", headers={"Nats-Msg-Id": traced, "traceparent": TRACEPARENT}
    )
    await js.publish(f"{fn.subject}.async", b"{}", headers={"Nats-Msg-Id": plain})
    record = await finished_record(http, fn, traced)
    assert record["status"] == "succeeded" and record["trace_id"] == TRACE_ID
    assert_continues(record["output"], TRACE_ID, PARENT_ID)
    fresh = await finished_record(http, fn, plain)
    assert re.fullmatch(r"[0-9a-f]{32}", fresh["trace_id"]) and fresh["trace_id"] != TRACE_ID
    assert_continues(fresh["output"], fresh["trace_id"], None)


async def test_a_browser_may_send_a_traceparent_and_it_is_continued(
    stack: Stack, http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await context_function(make_function)
    page = "http://app.test:3000"
    async with second_api(stack, cors_origins=(page,)) as api:
        preflight = await api.options(
            f"{fn.path}/invoke",
            headers={
                "Origin": page,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, traceparent, tracestate",
            },
        )
        assert preflight.status_code == 204, preflight.text
        allowed = preflight.headers["access-control-allow-headers"].lower()
        assert "traceparent" in allowed and "tracestate" in allowed
        # With an Origin the invoke goes through the Starlette app, not the hot path.
        ran = await api.post(
            f"{fn.path}/invoke",
            json={"payload": {}},
            headers={"Origin": page, "traceparent": TRACEPARENT},
        )
        assert ran.status_code == 200, ran.text
        assert_continues(ran.json()["body"], TRACE_ID, PARENT_ID)
    record = await wait_for_record(http, fn, ran.headers["X-Invocation-Id"])
    assert record["trace_id"] == TRACE_ID
