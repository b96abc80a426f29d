"""Live invocations (server-sent events) against the real stack: after ``: ready`` each finished
invocation of the function comes as it finishes, its record byte for byte as published, and
nothing of another function; refusals come before any stream; the stream ends, and its NATS
subscription with it, when the client goes away, the function is deleted, the API stops or its
token is revoked; an API process serves a bounded number at once."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from bus.embedded import EmbeddedNats
from tests.helpers import Fn, MakeFunction, Stack, second_api

NODE = {
    "index.js": r"""
exports.handler = async (event) => {
  if (event && event.fail) throw new Error('asked to fail');
  return { ok: true };
};
""",
}


async def next_frame(lines: AsyncIterator[str], timeout: float = 10.0) -> list[str] | None:
    """The lines of the next event or comment, up to its blank line; None when the stream ends."""
    found: list[str] = []
    async with asyncio.timeout(timeout):
        async for line in lines:
            if line:
                found.append(line)
            elif found:
                return found
    return found or None


async def next_record(lines: AsyncIterator[str]) -> tuple[str, bytes]:
    """The id and data of the next record event (pings skipped)."""
    while True:
        frame = await next_frame(lines)
        assert frame is not None, "the stream ended"
        if frame != [": ping"]:
            break
    event, event_id, data = frame
    assert event == "event: record"
    return event_id.removeprefix("id: "), data.removeprefix("data: ").encode()


async def follow(client: httpx.AsyncClient, url: str) -> tuple[httpx.Response, AsyncIterator[str]]:
    """A live stream, read up to ``: ready``."""
    response = await client.send(client.build_request("GET", url), stream=True)
    assert response.status_code == 200, await response.aread()
    lines = response.aiter_lines()
    assert await next_frame(lines) == ["retry: 3000"]
    assert await next_frame(lines) == [": ready"]
    return response, lines


async def invoke(http: httpx.AsyncClient, fn: Fn, fail: bool) -> str:
    answer = await http.post(f"{fn.path}/invoke", json={"payload": {"fail": fail}})
    assert answer.status_code == (500 if fail else 200), answer.text
    return answer.headers["x-invocation-id"]


async def subscribed(server: EmbeddedNats, subject: str) -> bool:
    """Whether any connection to the server is subscribed to exactly ``subject``."""
    system = await nats.connect(server.urls["system"])
    try:
        ask = json.dumps({"subscriptions": True, "limit": 100_000}).encode()
        reply = await system.request("$SYS.REQ.SERVER.PING.CONNZ", ask, timeout=5)
    finally:
        await system.close()
    connections = json.loads(reply.data)["data"]["connections"]
    return any(subject in (c.get("subscriptions_list") or []) for c in connections)


async def until_unsubscribed(server: EmbeddedNats, subject: str) -> None:
    async with asyncio.timeout(5):
        while await subscribed(server, subject):
            await asyncio.sleep(0.05)


async def test_a_stream_sends_each_finished_invocation_of_its_function_as_published(
    stack: Stack,
    nats_server: EmbeddedNats,
    nc: Client,
    http: httpx.AsyncClient,
    make_function: MakeFunction,
) -> None:
    fn, other = await make_function(NODE), await make_function(NODE)
    published: dict[str, bytes] = {}

    async def heard(msg: Msg) -> None:
        published[json.loads(msg.data)["invocation_id"]] = msg.data

    # Not the stream's own subject, which must be gone from the server at the end.
    await nc.subscribe(f"{fn.subject}.result.>", cb=heard)
    await nc.flush()
    results = f"{fn.subject}.result.*"
    # An API connected as the embedded server's api user, as `computebus serve` runs it.
    async with second_api(stack, nats_url=nats_server.urls["api"]) as api:
        response, lines = await follow(api, f"{fn.path}/invocations/live")
        try:
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-cache"
            assert response.headers["x-accel-buffering"] == "no"
            assert await subscribed(nats_server, results)
            succeeded = await invoke(http, fn, fail=False)
            await invoke(http, other, fail=False)  # published between the two: never sent here
            failed = await invoke(http, fn, fail=True)
            first_id, first = await next_record(lines)
            second_id, second = await next_record(lines)
            assert [first_id, second_id] == [succeeded, failed]
            assert json.loads(first)["status"] == "succeeded"
            assert json.loads(second)["status"] == "failed"
            assert json.loads(second)["error_code"] == "function_error"
            async with asyncio.timeout(5):
                while len(published) < 2:
                    await asyncio.sleep(0.01)
            assert first == published[succeeded] and second == published[failed]
        finally:
            await response.aclose()  # the client goes away
        await until_unsubscribed(nats_server, results)


async def test_a_stream_ends_when_its_function_is_deleted(
    stack: Stack, nats_server: EmbeddedNats, http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function(NODE)
    response, lines = await follow(http, f"{fn.path}/invocations/live")
    try:
        assert (await http.delete(fn.path)).status_code == 200
        assert await next_frame(lines) is None
    finally:
        await response.aclose()
    await until_unsubscribed(nats_server, f"{fn.subject}.result.*")


async def test_a_stream_ends_when_its_token_is_revoked_and_sends_nothing_after(
    stack: Stack, nats_server: EmbeddedNats, http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function(NODE)
    made = (
        await http.post(
            "/compute/tokens", json={"name": "reader", "scopes": [f"read:{fn.collection}"]}
        )
    ).json()["body"]
    reader = {"Authorization": f"Bearer {made['token']}"}
    async with httpx.AsyncClient(base_url=stack.api, timeout=30, headers=reader) as client:
        response, lines = await follow(client, f"{fn.path}/invocations/live")
        try:
            assert (await http.delete(f"/compute/tokens/{made['id']}")).status_code == 200
            async with asyncio.timeout(5):  # the API has heard of it
                while (await client.get(fn.path)).status_code != 401:
                    await asyncio.sleep(0.05)
            await invoke(http, fn, fail=False)
            assert await next_frame(lines) is None  # ended, the record not sent
        finally:
            await response.aclose()
    await until_unsubscribed(nats_server, f"{fn.subject}.result.*")


async def test_a_stream_is_refused_before_it_starts(
    stack: Stack, http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function(NODE)
    live = f"{fn.path}/invocations/live"
    async with httpx.AsyncClient(base_url=stack.api, timeout=10) as anonymous:
        refused = await anonymous.get(live)
        assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"
    made = await http.post("/compute/tokens", json={"name": "elsewhere", "scopes": ["read:x"]})
    stranger = {"Authorization": f"Bearer {made.json()['body']['token']}"}
    for path, headers in [
        (f"/compute/functions/{fn.collection}/000000001/invocations/live", {}),
        (f"/compute/functions/{fn.collection}/no-such-name/invocations/live", {}),
        (live, stranger),
    ]:
        answer = await http.get(path, headers=headers)
        assert answer.status_code == 404, (path, answer.text)
        assert answer.json()["code"] == "function_not_found"


async def test_streams_are_capped_per_api_and_end_when_it_stops(
    stack: Stack, make_function: MakeFunction
) -> None:
    fn = await make_function(NODE)
    live = f"{fn.path}/invocations/live"
    async with httpx.AsyncClient(timeout=30, headers=stack.auth) as own:
        # A drain far longer than the stop may take: an open stream must not hold it.
        async with second_api(stack, live_streams_max=1, drain_s=20.0) as api:
            response, lines = await follow(own, f"{api.base_url}{live}")
            refused = await api.get(live)
            assert refused.status_code == 429, refused.text
            assert refused.json()["code"] == "rate_limited"
            assert "1 live streams" in refused.json()["error"]
            assert "COMPUTEBUS_LIVE_STREAMS_MAX" in refused.json()["error"]
            assert int(refused.headers["retry-after"]) > 0
            scraped = (await api.get("/metrics")).text
            assert "\ncomputebus_api_live_streams 1.0\n" in scraped
            began = time.monotonic()
        stopped_in = time.monotonic() - began
        try:
            assert await next_frame(lines) is None  # the stream was ended, not cut
        finally:
            await response.aclose()
    assert stopped_in < 5, stopped_in
