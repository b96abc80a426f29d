"""Subject triggers (``type: "subject"``) against the real stack: real publishes on the APP
account's subjects become Async invocations, with the message in ``context.trigger``; wildcards;
messages published while no worker runs wait in the Async stream; switching off and on; delete
(with its function too) removes the streams; every bad input."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.aio.client import Client

from bus import subjects
from bus.embedded import start_embedded_nats
from executor.api.server import run_api
from executor.worker.start import run_worker
from tests.helpers import (
    Fn,
    MakeFunction,
    Stack,
    admin_token,
    b64,
    function_body,
    second_api,
)

# Returns what it was given: the payload, and the trigger part of its context.
ECHO = {
    "index.js": "exports.handler = async (event, context) => ({event, trigger: context.trigger});\n"
}


def unique() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def target(fn: Fn) -> dict[str, str]:
    return {"collection_topic": fn.collection, "service": fn.service}


async def subject_trigger(
    http: httpx.AsyncClient, fn: Fn, source: str, **more: Any
) -> dict[str, Any]:
    body = {"type": "subject", "source": source, "function": target(fn), **more}
    answer = await http.post("/compute/triggers", json=body)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()["body"]
    return created


async def records(
    http: httpx.AsyncClient, fn: Fn, count: int, timeout: float = 10.0
) -> list[dict[str, Any]]:
    """The function's finished records once there are ``count`` of them."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        answer = await http.get(f"{fn.path}/invocations", params={"limit": 100})
        listed = answer.json()["body"]["results"]
        found = [r for r in listed if r["status"] == "succeeded"]
        if len(found) >= count:
            return found
        assert asyncio.get_running_loop().time() < deadline, f"{count} records wanted: {listed}"
        await asyncio.sleep(0.05)


async def failed_after(
    http: httpx.AsyncClient, fn: Fn, started: int, timeout: float = 10.0
) -> dict[str, Any]:
    """The function's failed record that started after ``started``, once there is one."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        answer = await http.get(f"{fn.path}/invocations", params={"status": "failed"})
        found = [r for r in answer.json()["body"]["results"] if r["started"] > started]
        if found:
            record: dict[str, Any] = found[0]
            return record
        assert asyncio.get_running_loop().time() < deadline, answer.text
        await asyncio.sleep(0.05)


async def test_each_published_message_is_one_invocation_with_its_headers_in_context(
    http: httpx.AsyncClient, make_function: MakeFunction, client: Client
) -> None:
    fn = await make_function(ECHO)
    source = f"{unique()}.orders.created"
    trigger = await subject_trigger(http, fn, source)
    assert trigger["type"] == "subject" and trigger["source"] == source
    assert trigger["alias"] == "production" and trigger["enabled"] is True

    await client.publish(source, b'{"order": 1}', headers={"X-Shop": "north"})
    await client.publish(source, b'{"order": 2}', headers={"Compute-Alias": "nope"})
    await client.flush()
    found = await records(http, fn, 2)
    first, second = sorted(found, key=lambda r: r["output"]["event"]["order"])
    assert first["invocation_type"] == "Async" and first["trigger"] == trigger["id"]
    assert first["output"]["event"] == {"order": 1}
    seen = first["output"]["trigger"]
    assert seen == {
        "id": trigger["id"],
        "subject": source,
        "headers": {"X-Shop": "north"},
        "type": "subject",
    }
    # A publisher's own Compute-* headers are not options: the trigger's alias ran.
    assert second["output"]["event"] == {"order": 2}
    assert second["output"]["trigger"]["headers"] == {}
    assert first["invocation_id"] != second["invocation_id"]

    shown = (await http.get(fn.path)).json()["body"]
    assert [t["id"] for t in shown["triggers"]] == [trigger["id"]]


async def test_wildcard_sources_take_every_matching_subject(
    http: httpx.AsyncClient, make_function: MakeFunction, client: Client
) -> None:
    fn = await make_function(ECHO)
    base = unique()
    await subject_trigger(http, fn, f"{base}.*.created")
    other = await make_function(ECHO)
    await subject_trigger(http, other, f"{base}.audit.*.>")  # 4+ tokens: beside it
    await client.publish(f"{base}.orders.created", b"1")
    await client.publish(f"{base}.users.created", b"2")
    await client.publish(f"{base}.users.deleted", b"3")  # neither
    await client.publish(f"{base}.audit.a.b", b"4")
    await client.flush()
    found = await records(http, fn, 2)
    assert sorted(r["output"]["trigger"]["subject"] for r in found) == [
        f"{base}.orders.created",
        f"{base}.users.created",
    ]
    (audit,) = await records(http, other, 1)
    assert audit["output"] == {
        "event": 4,
        "trigger": audit["output"]["trigger"],
    } and audit["output"]["trigger"]["subject"] == (f"{base}.audit.a.b")
    await asyncio.sleep(0.3)
    assert len(await records(http, fn, 2)) == 2  # the .deleted one ran nowhere


async def test_disabled_drops_messages_enabled_takes_them_again_delete_removes_the_stream(
    http: httpx.AsyncClient, make_function: MakeFunction, client: Client, nc: Client
) -> None:
    fn = await make_function(ECHO)
    source = f"{unique()}.events"
    trigger = await subject_trigger(http, fn, source)
    off = await http.patch(f"/compute/triggers/{trigger['id']}", json={"enabled": False})
    assert off.status_code == 200 and off.json()["body"]["enabled"] is False
    await client.publish(source, b'"while off"')
    await client.flush()
    await asyncio.sleep(0.3)
    on = await http.patch(f"/compute/triggers/{trigger['id']}", json={"enabled": True})
    assert on.status_code == 200 and on.json()["body"]["enabled"] is True
    await client.publish(source, b'"back on"')
    await client.flush()
    (ran,) = await records(http, fn, 1)
    assert ran["output"]["event"] == "back on"
    await asyncio.sleep(0.3)
    assert len(await records(http, fn, 1)) == 1  # the one published while off was dropped

    stream = subjects.trigger_stream(trigger["id"], "production")
    js = nc.jetstream()
    assert (await js.stream_info(stream)).config.name == stream
    gone = await http.delete(f"/compute/triggers/{trigger['id']}")
    assert gone.status_code == 200
    assert (await http.get(f"/compute/triggers/{trigger['id']}")).status_code == 404
    with pytest.raises(nats.js.errors.NotFoundError):
        await js.stream_info(stream)
    sources = (await js.stream_info(subjects.ASYNC_STREAM)).config.sources or []
    assert stream not in {s.name for s in sources}
    # Its source is free again.
    again = await subject_trigger(http, fn, source)
    await http.delete(f"/compute/triggers/{again['id']}")


async def test_deleting_the_function_deletes_its_subject_triggers_and_their_streams(
    http: httpx.AsyncClient, make_function: MakeFunction, nc: Client
) -> None:
    fn = await make_function(ECHO)
    trigger = await subject_trigger(http, fn, f"{unique()}.x")
    assert (await http.delete(fn.path)).status_code == 200
    assert (await http.get(f"/compute/triggers/{trigger['id']}")).status_code == 404
    with pytest.raises(nats.js.errors.NotFoundError):
        await nc.jetstream().stream_info(subjects.trigger_stream(trigger["id"], "production"))


@pytest.mark.parametrize(
    "source",
    [
        "",
        "orders..created",
        "orders created",
        "orders.>.x",
        "orders.cre*",
        ">",
        "ms.compute.c.function.f",
        "ms.>",
        "*.compute.x",
        "computebus.workers.ping",
        "$JS.API.STREAM.LIST",
        "$SYS.>",
        "_INBOX.abc",
        "a.b.c.d.e.f.g",
    ],
)
async def test_a_source_that_is_not_a_subject_or_not_ours_to_give_is_a_400_naming_it(
    http: httpx.AsyncClient, make_function: MakeFunction, source: str
) -> None:
    fn = await make_function(ECHO)
    body = {"type": "subject", "source": source, "function": target(fn)}
    answer = await http.post("/compute/triggers", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["details"][0]["path"] == "/source"


async def test_an_overlapping_source_is_a_409_naming_it_and_other_bad_bodies(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function(ECHO)
    base = unique()
    await subject_trigger(http, fn, f"{base}.a.*")
    for overlapping in (f"{base}.a.b", f"{base}.>", f"{base}.*.*"):
        body = {"type": "subject", "source": overlapping, "function": target(fn)}
        answer = await http.post("/compute/triggers", json=body)
        assert answer.status_code == 409, answer.text
        assert answer.json()["details"][0]["path"] == "/source"
    await subject_trigger(http, fn, f"{base}.b.*")  # beside it is fine

    missing = {"collection_topic": fn.collection, "service": "999999999"}
    body = {"type": "subject", "source": f"{base}.c", "function": missing}
    answer = await http.post("/compute/triggers", json=body)
    assert answer.status_code == 404 and answer.json()["code"] == "function_not_found"

    body = {"type": "subject", "source": f"{base}.c", "function": target(fn), "alias": "beta"}
    answer = await http.post("/compute/triggers", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["details"][0]["path"] == "/alias"


async def test_messages_published_while_no_worker_runs_wait_and_run_once_one_starts(
    tmp_path: Path, stack: Stack
) -> None:
    """Its own bus, API and (later) worker: the session's worker would take them at once."""
    server = await start_embedded_nats(tmp_path / "nats")
    settings = dataclasses.replace(stack.settings, data_dir=tmp_path / "cb", port=0)
    stop = asyncio.Event()
    url: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    api = asyncio.create_task(run_api(server.url, settings, stop, on_ready=url.set_result))
    worker: asyncio.Task[Any] | None = None
    try:
        base_url = await asyncio.wait_for(url, 30)
        token = await admin_token(server.url, settings.data_dir)
        auth = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=base_url, headers=auth, timeout=30) as http:
            created = await http.post("/compute/functions", json=function_body(ECHO))
            assert created.status_code == 201, created.text
            fn = Fn("tests", created.json()["body"]["compute_asset"]["service"], {})
            source = f"{unique()}.queued"
            await subject_trigger(http, fn, source)
            client = await nats.connect(server.urls["client"])
            for n in range(3):
                await client.publish(source, str(n).encode())
            await client.drain()
            js_nc = await nats.connect(server.url)
            try:
                info = await js_nc.jetstream().stream_info(
                    subjects.ASYNC_STREAM,
                    subjects_filter=subjects.async_subject(fn.collection, fn.service),
                )
                for _ in range(50):
                    if info.state.messages == 3:
                        break
                    await asyncio.sleep(0.05)
                    info = await js_nc.jetstream().stream_info(subjects.ASYNC_STREAM)
                assert info.state.messages == 3  # held by the server, no worker yet
            finally:
                await js_nc.close()
            worker = asyncio.create_task(run_worker(server.url, settings, stop))
            found = await records(http, fn, 3, timeout=20)
            assert sorted(r["output"]["event"] for r in found) == [0, 1, 2]
    finally:
        stop.set()
        await asyncio.gather(api, *([worker] if worker else []), return_exceptions=True)
        await server.stop()


async def test_a_role_starting_again_keeps_the_triggers_sources_and_a_second_api_sees_them(
    http: httpx.AsyncClient, make_function: MakeFunction, client: Client, stack: Stack
) -> None:
    fn = await make_function(ECHO)
    source = f"{unique()}.kept"
    trigger = await subject_trigger(http, fn, source)
    # What every API and worker does at start: bring the Async stream's settings up to date.
    async with second_api(stack) as other:
        shown = await other.get(f"/compute/triggers/{trigger['id']}")
        assert shown.status_code == 200 and shown.json()["body"]["source"] == source
    await client.publish(source, b'"after"')
    await client.flush()
    (ran,) = await records(http, fn, 1)
    assert ran["output"]["event"] == "after"


async def test_the_trigger_s_alias_runs_and_a_dead_letter_redriven_runs_it_again(
    http: httpx.AsyncClient, make_function: MakeFunction, client: Client
) -> None:
    fn = await make_function(ECHO, async_config={"max_attempts": 1})
    failing = {"index.js": "exports.handler = async () => { throw new Error('canary'); };\n"}
    assets = [{"asset_name": n, "asset_value": b64(v)} for n, v in failing.items()]
    where = f"/compute/compute-assets/{fn.collection}/{fn.service}"
    staged = await http.patch(where, params={"promote": "false"}, json={"assets": assets})
    assert staged.status_code == 200, staged.text
    moved = await http.put(f"{fn.path}/aliases/canary", json={"revision_number": 2})
    assert moved.status_code == 200, moved.text
    source = f"{unique()}.canary"
    trigger = await subject_trigger(http, fn, source, alias="canary")
    assert trigger["alias"] == "canary"
    await client.publish(source, b"1")
    await client.flush()
    record = await failed_after(http, fn, 0)
    assert record["revision"] == 2 and record["error_code"] == "function_error"
    assert record["trigger"] == trigger["id"]
    retry = await http.post(f"{fn.path}/invocations/{record['invocation_id']}/retry")
    assert retry.status_code == 202, retry.text
    again = await failed_after(http, fn, record["started"])
    assert again["revision"] == 2  # production (revision 1) would have succeeded
