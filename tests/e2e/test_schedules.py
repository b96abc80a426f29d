"""Schedules against the session stack: a one-second schedule's real ticks become Async
invocations (one record each, named by the schedule, ids derived from the tick), deleting it
stops them, every bad input is refused before anything is stored, and deleting the function
deletes its schedules."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
from nats.aio.client import Client

from bus import subjects
from bus.caller_seal import CallerSeal
from bus.schedules import tick_invocation_id
from tests.helpers import Fn, MakeFunction

ECHO = "exports.handler = async (event) => ({ got: event });"
SCHEMA = {"input": {"type": "object", "properties": {"n": {"type": "integer"}}}}


async def echo(make_function: MakeFunction) -> Fn:
    return await make_function({"index.js": ECHO}, schema=SCHEMA)


async def finished_ticks(
    http: httpx.AsyncClient, fn: Fn, count: int, timeout: float = 10.0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        listing = (await http.get(f"{fn.path}/invocations?status=succeeded")).json()["body"]
        ticks = [r for r in listing["results"] if r.get("schedule")]
        if len(ticks) >= count:
            return ticks
        assert time.monotonic() < deadline, f"{len(ticks)} ticks ran, not {count}"
        await asyncio.sleep(0.1)


async def test_a_one_second_schedule_ticks_until_deleted(
    http: httpx.AsyncClient, make_function: MakeFunction, nc: Client
) -> None:
    fn = await echo(make_function)
    created = await http.post(
        f"{fn.path}/schedules", json={"name": "every-second", "every": "1s", "payload": {"n": 7}}
    )
    assert created.status_code == 201, created.text
    shown = created.json()["body"]
    assert shown["every"] == "1s" and shown["payload"] == {"n": 7}
    assert shown["target"] == f"{fn.subject}.async"
    assert (await http.get(f"{fn.path}/schedules/every-second")).json()["body"] == shown
    listing = (await http.get(f"{fn.path}/schedules")).json()["body"]
    assert listing == {"results": [shown], "results_total": 1}
    assert (await http.get(fn.path)).json()["body"]["schedules"] == [shown]

    ticks = await finished_ticks(http, fn, 2)
    assert {t["schedule"] for t in ticks} == {"every-second"}
    assert all(t["invocation_type"] == "Async" and t["output"] == {"got": {"n": 7}} for t in ticks)
    ids = [t["invocation_id"] for t in ticks]
    assert len(set(ids)) == len(ids)
    # Derived from the tick: the schedule, and the next tick's time the server stamps on it.
    seal = await CallerSeal.open(nc.jetstream())
    stream = subjects.SCHEDULES_STREAM
    tick_subject = subjects.tick_subject(fn.collection, fn.service, "every-second")
    last = await nc.jetstream().get_last_msg(stream, tick_subject)
    assert last.headers is not None
    expected = tick_invocation_id(
        seal, fn.collection, fn.service, "every-second", last.headers["Nats-Schedule-Next"]
    )
    await finished_ticks(http, fn, len(ids) + 1)  # the stored tick has run by then
    listing = (await http.get(f"{fn.path}/invocations")).json()["body"]["results"]
    assert expected in {r["invocation_id"] for r in listing}

    deleted = await http.delete(f"{fn.path}/schedules/every-second")
    assert deleted.status_code == 200, deleted.text
    assert (await http.get(f"{fn.path}/schedules/every-second")).status_code == 404
    await asyncio.sleep(0.6)  # a tick already sourced may still finish
    settled = len(await finished_ticks(http, fn, 0))
    await asyncio.sleep(2.0)
    assert len(await finished_ticks(http, fn, 0)) == settled


async def test_creating_and_deleting_publish_the_function_updated(
    http: httpx.AsyncClient, make_function: MakeFunction, nc: Client
) -> None:
    fn = await echo(make_function)
    heard: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_event(msg: Any) -> None:
        await heard.put(msg.data)

    sub = await nc.subscribe(f"{fn.subject}.event.updated", cb=on_event)
    await nc.flush()
    cron = {"name": "nightly", "cron": "0 30 2 * * *", "timezone": "Europe/Paris", "payload": {}}
    assert (await http.post(f"{fn.path}/schedules", json=cron)).status_code == 201
    event = json.loads(await asyncio.wait_for(heard.get(), 5))
    assert [s["name"] for s in event["schedules"]] == ["nightly"]
    assert event["schedules"][0]["timezone"] == "Europe/Paris"
    assert (await http.delete(f"{fn.path}/schedules/nightly")).status_code == 200
    event = json.loads(await asyncio.wait_for(heard.get(), 5))
    assert event["schedules"] == []
    await sub.unsubscribe()


async def refused(http: httpx.AsyncClient, fn: Fn, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post(f"{fn.path}/schedules", json=body)
    assert response.status_code == 400, response.text
    error: dict[str, Any] = response.json()
    return error


async def test_bad_schedules_are_refused_naming_the_field(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await echo(make_function)
    error = await refused(http, fn, {"name": "a", "cron": "0 0 25 * * *"})
    assert error["code"] == "invalid_request"
    assert error["details"][0]["path"] == "/cron"
    assert "field 3 (hour) '25'" in error["details"][0]["message"]
    error = await refused(http, fn, {"name": "a", "cron": "* * * *"})
    assert "6 fields" in error["details"][0]["message"]
    error = await refused(http, fn, {"name": "a", "cron": "0 0 0 30 2 *"})
    assert error["details"][0]["path"] == "/cron"
    error = await refused(http, fn, {"name": "a", "cron": "* * * * * *", "timezone": "Mars/Base"})
    assert error["details"][0]["path"] == "/timezone"
    error = await refused(http, fn, {"name": "a", "every": "500ms"})
    assert error["details"][0]["path"] == "/every"
    error = await refused(http, fn, {"name": "a", "every": "soon"})
    assert error["details"][0]["path"] == "/every"
    error = await refused(http, fn, {"name": "a", "every": "1s", "cron": "* * * * * *"})
    assert {d["path"] for d in error["details"]} == {"/cron", "/every"}
    error = await refused(http, fn, {"name": "a"})
    assert {d["path"] for d in error["details"]} == {"/cron", "/every"}
    error = await refused(http, fn, {"name": "a.b", "every": "1s"})
    assert error["details"][0]["path"] == "/name"
    error = await refused(http, fn, {"name": "a", "every": "1s", "payload": {"n": "x"}})
    assert error["code"] == "invalid_input"
    assert error["details"][0]["path"] == "/payload/n"
    assert (await http.get(f"{fn.path}/schedules")).json()["body"]["results_total"] == 0


async def test_a_taken_name_a_missing_function_and_a_deleted_one(
    http: httpx.AsyncClient, make_function: MakeFunction, nc: Client
) -> None:
    fn = await echo(make_function)
    hourly = {"name": "hourly", "cron": "@hourly", "payload": {}}
    assert (await http.post(f"{fn.path}/schedules", json=hourly)).status_code == 201
    again = await http.post(f"{fn.path}/schedules", json=hourly)
    assert again.status_code == 409, again.text
    assert again.json()["details"][0]["path"] == "/name"
    missing = await http.post(
        f"/compute/functions/{fn.collection}/999999999/schedules", json=hourly
    )
    assert missing.status_code == 404
    assert missing.json()["code"] == "function_not_found"

    assert (await http.delete(fn.path)).status_code == 200
    info = await nc.jetstream().stream_info(
        subjects.SCHEDULES_STREAM,
        subjects_filter=subjects.schedule_filter(fn.collection, fn.service),
    )
    assert not info.state.subjects


async def test_reading_needs_read_and_changing_needs_deploy(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await echo(make_function)
    answer = await http.post(
        "/compute/tokens", json={"name": "schedule-reader", "scopes": [f"read:{fn.collection}"]}
    )
    reader = {"Authorization": f"Bearer {answer.json()['body']['token']}"}
    daily = {"name": "daily", "cron": "@daily", "payload": {}}
    refused = await http.post(f"{fn.path}/schedules", json=daily, headers=reader)
    assert refused.status_code == 403
    assert (await http.post(f"{fn.path}/schedules", json=daily)).status_code == 201
    assert (await http.get(f"{fn.path}/schedules/daily", headers=reader)).status_code == 200
    gone = await http.delete(f"{fn.path}/schedules/daily", headers=reader)
    assert gone.status_code == 403
    assert (await http.delete(f"{fn.path}/schedules/daily")).status_code == 200
