"""NATS micro discovery (ADR-32) against the real stack: from the APP account, the client user
pings the workers, lists one endpoint per function (its subject, queue group and schemas as they
are) and reads stats that move by exactly the invocations made; a token scoped to a collection
may only ping, and no client may answer as computebus."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import nats
import nats.micro
from nats.aio.client import Client

from bus import subjects
from bus.embedded import EmbeddedNats
from bus.service_discovery import package_version
from schemas import micro
from tests.bus.test_nats_users import Seen
from tests.e2e.test_access import NODE_ECHO, collection, token
from tests.e2e.test_nats_tokens import as_token
from tests.helpers import Fn, MakeFunction, Stack, workers_ready

IN_SCHEMA = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}
OUT_SCHEMA = {"type": "object", "required": ["got"]}


async def ask(nc: Client, subject: str, expected: int, wait_s: float = 3.0) -> list[Any]:
    """Every answer to one discovery request: ``expected`` of them, or what came in ``wait_s``."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish(subject, b"", reply=inbox)
    answers: list[Any] = []
    deadline = asyncio.get_running_loop().time() + wait_s
    try:
        while len(answers) < expected:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            try:
                answers.append(json.loads((await sub.next_msg(timeout=left)).data))
            except nats.errors.TimeoutError:
                break
    finally:
        await sub.unsubscribe()
    return answers


def endpoints_for(answers: list[Any], fn: Fn) -> list[dict[str, Any]]:
    found = [e for a in answers for e in a["endpoints"] if e["subject"] == fn.subject]
    assert found, f"no endpoint for {fn.subject}"
    return found


def total(answers: list[Any], fn: Fn, field: str) -> int:
    return sum(int(e[field]) for e in endpoints_for(answers, fn))


async def test_the_client_discovers_the_workers_their_functions_and_their_stats(
    client: Client, http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    typed = await make_function(NODE_ECHO, schema={"input": IN_SCHEMA, "output": OUT_SCHEMA})
    plain = await make_function(NODE_ECHO)
    workers = await workers_ready(http)

    pings = await ask(client, "$SRV.PING", workers)
    assert len(pings) == workers
    for ping in pings:
        assert ping["type"] == "io.nats.micro.v1.ping_response"
        assert ping["name"] == "computebus"
        assert ping["version"] == package_version()
        assert ping["id"] == micro.instance_id(ping["metadata"]["worker"])
        assert ping["metadata"]["role"] == "worker"
    one = pings[0]["id"]
    assert [p["id"] for p in await ask(client, f"$SRV.PING.computebus.{one}", 1)] == [one]

    infos = await ask(client, "$SRV.INFO.computebus", workers)
    assert len(infos) == workers
    for info in infos:
        assert info["type"] == "io.nats.micro.v1.info_response"
        assert info["name"] == "computebus"
    endpoint = endpoints_for(infos, typed)[0]
    assert endpoint["subject"] == subjects.function_subject(typed.collection, typed.service)
    assert endpoint["queue_group"] == subjects.WORKER_QUEUE == "computebus-workers"
    assert endpoint["name"] == f"{typed.collection}-{typed.service}"
    meta = endpoint["metadata"]
    assert json.loads(meta["input_schema"]) == IN_SCHEMA
    assert json.loads(meta["output_schema"]) == OUT_SCHEMA
    assert (meta["collection_topic"], meta["service"]) == (typed.collection, typed.service)
    assert meta["function"] == typed.body["name"]
    assert (meta["alias"], meta["revision"], json.loads(meta["aliases"])) == (
        "production",
        "1",
        {"production": 1},
    )
    assert all(isinstance(v, str) for v in meta.values())  # ADR-32: string to string
    assert "input_schema" not in endpoints_for(infos, plain)[0]["metadata"]

    before = await ask(client, "$SRV.STATS", workers)
    assert before[0]["type"] == "io.nats.micro.v1.stats_response"
    assert total(before, typed, "num_requests") == 0

    assert (await client.request(typed.subject, b'{"x":1}', timeout=10)).data == b'{"got":{"x":1}}'
    assert (await client.request(typed.subject, b'{"x":2}', timeout=10)).data == b'{"got":{"x":2}}'
    refused = await client.request(typed.subject, b'{"x":"no"}', timeout=10)
    assert (refused.headers or {})["Nats-Service-Error-Code"] == "400"
    assert (await http.post(f"{plain.path}/invoke", json={"payload": 7})).status_code == 200

    after = await ask(client, "$SRV.STATS.computebus", workers)
    assert total(after, typed, "num_requests") == 3
    assert total(after, typed, "num_errors") == 1
    assert (total(after, plain, "num_requests"), total(after, plain, "num_errors")) == (1, 0)
    for stats in after:
        assert stats["started"].endswith("Z")
    (busy,) = [e for e in endpoints_for(after, typed) if e["num_requests"]]
    assert busy["last_error"].startswith("400:")
    assert busy["processing_time"] > 0
    assert busy["average_processing_time"] == busy["processing_time"] // busy["num_requests"]
    assert busy["queue_group"] == "computebus-workers"


async def test_a_scoped_token_may_only_ping_and_no_client_answers_as_computebus(
    nats_server: EmbeddedNats, stack: Stack, http: httpx.AsyncClient
) -> None:
    workers = await workers_ready(http)
    reader = await token(http, f"read:{collection()}")
    errors = Seen()
    async with as_token(nats_server, reader, errors) as nc:
        assert len(await ask(nc, "$SRV.PING.computebus", workers)) == workers
        await nc.publish("$SRV.INFO.computebus", b"", reply=nc.new_inbox())
        await errors.violation('publish to "$SRV.INFO.computebus"')
    async with as_token(nats_server, stack.token) as admin:  # reads every collection
        assert len(await ask(admin, "$SRV.INFO", workers)) == workers

    seen = Seen()
    spoofer = await nats.connect(
        nats_server.urls["client"], error_cb=seen.on_error, allow_reconnect=False
    )
    try:
        await spoofer.subscribe("$SRV.INFO.computebus")
        await seen.violation('subscription to "$SRV.INFO.computebus"')
    finally:
        await spoofer.close()


async def test_every_form_answers_beside_the_applications_own_services(
    client: Client, http: httpx.AsyncClient
) -> None:
    workers = await workers_ready(http)
    one = (await ask(client, "$SRV.PING", workers))[0]["id"]
    for verb in subjects.SRV_VERBS:
        kind = f"io.nats.micro.v1.{verb.lower()}_response"
        plain, named, by_id = subjects.srv_subjects(verb, one)
        for subject, count in ((plain, workers), (named, workers), (by_id, 1)):
            answers = await ask(client, subject, count)
            assert len(answers) == count, subject
            assert {(a["type"], a["name"]) for a in answers} == {(kind, "computebus")}
        assert {a["id"] for a in await ask(client, by_id, 2, wait_s=0.15)} == {one}

    # The application's own micro service in APP still hears the plain forms, computebus too.
    service = await nats.micro.add_service(client, name="shop", version="1.0.0")
    try:
        names = [a["name"] for a in await ask(client, "$SRV.PING", workers + 1)]
        assert sorted(names) == sorted(["shop"] + ["computebus"] * workers)
    finally:
        await service.stop()
