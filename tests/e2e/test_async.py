"""Async invocations against the session stack: queueing, status, idempotency, retries, dead
letters and redrive, deadlines, long runs. The fault tests (killed servers and workers) are in
test_async_faults.py."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import httpx
import msgspec
from nats.aio.client import Client

from bus.dead_letters import DeadLetters
from schemas.invocations import DeadLetter
from tests.helpers import COUNTING_HANDLER, ExecutionCounter, Fn, MakeFunction, function_body


async def counting_function(
    make_function: MakeFunction,
    counter: ExecutionCounter,
    *,
    max_attempts: int = 3,
    backoff_ms: int = 50,
    **env: Any,
) -> Fn:
    return await make_function(
        {"index.py": COUNTING_HANDLER},
        runtime="python",
        compute_asset={"network": True, "env_vars": counter.env(**env)},
        async_config={"max_attempts": max_attempts, "backoff_ms": backoff_ms},
    )


async def submit(
    http: httpx.AsyncClient, fn: Fn, payload: Any = None, **headers: str
) -> httpx.Response:
    return await http.post(
        f"{fn.path}/invoke",
        json={"payload": payload, "invocation_type": "Async"},
        headers=headers,
    )


async def wait_until_finished(
    http: httpx.AsyncClient, fn: Fn, invocation_id: str, timeout: float = 20.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = await http.get(f"{fn.path}/invocations/{invocation_id}")
        if response.status_code == 200:
            record: dict[str, Any] = response.json()["body"]
            if record["status"] in ("succeeded", "failed"):
                return record
        assert time.monotonic() < deadline, f"{invocation_id} not finished: {response.text}"
        await asyncio.sleep(0.05)


async def test_async_invoke_answers_202_then_runs_and_records(
    http: httpx.AsyncClient, nc: Client, make_function: MakeFunction, counter: ExecutionCounter
) -> None:
    fn = await counting_function(make_function, counter)
    events = await nc.subscribe(f"{fn.subject}.result.*")
    response = await submit(http, fn, {"n": 1})
    assert response.status_code == 202, response.text
    accepted = response.json()["body"]
    invocation_id = accepted["invocation_id"]
    assert accepted["status"] == "queued"
    assert response.headers["X-Invocation-Id"] == invocation_id

    record = await wait_until_finished(http, fn, invocation_id)
    assert record["status"] == "succeeded", record
    assert record["invocation_type"] == "Async"
    assert record["attempts"] == 1
    assert record["input"] == {"n": 1}
    assert record["output"] == {"invocation_id": invocation_id, "run": 1, "event": {"n": 1}}
    assert counter.runs == {invocation_id: 1}

    event = await events.next_msg(timeout=5)
    assert event.subject == f"{fn.subject}.result.succeeded"
    assert msgspec.json.decode(event.data)["invocation_id"] == invocation_id


async def test_status_is_queued_then_running_then_succeeded(
    http: httpx.AsyncClient, make_function: MakeFunction, counter: ExecutionCounter
) -> None:
    fn = await counting_function(make_function, counter, SLEEP_S="1.5")
    invocation_id = (await submit(http, fn)).json()["body"]["invocation_id"]
    seen: list[str] = []
    deadline = time.monotonic() + 20
    while not seen or seen[-1] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, seen
        response = await http.get(f"{fn.path}/invocations/{invocation_id}")
        assert response.status_code == 200, response.text
        status = response.json()["body"]["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        await asyncio.sleep(0.02)
    assert seen[-2:] == ["running", "succeeded"], seen
    assert set(seen) <= {"queued", "running", "succeeded"}
    listed = await http.get(f"{fn.path}/invocations", params={"status": "succeeded"})
    assert [r["invocation_id"] for r in listed.json()["body"]["results"]] == [invocation_id]


async def test_same_idempotency_key_runs_once_and_names_one_invocation(
    http: httpx.AsyncClient, make_function: MakeFunction, counter: ExecutionCounter
) -> None:
    fn = await counting_function(make_function, counter)
    first = await submit(http, fn, 1, **{"Idempotency-Key": "order-42"})
    second = await submit(http, fn, 1, **{"Idempotency-Key": "order-42"})
    other = await submit(http, fn, 1, **{"Idempotency-Key": "order-43"})
    assert first.status_code == second.status_code == other.status_code == 202
    invocation_id = first.json()["body"]["invocation_id"]
    assert second.json()["body"]["invocation_id"] == invocation_id
    assert other.json()["body"]["invocation_id"] != invocation_id
    await wait_until_finished(http, fn, invocation_id)
    await wait_until_finished(http, fn, other.json()["body"]["invocation_id"])
    # Once finished, the same key still answers with that invocation and runs nothing.
    again = await submit(http, fn, 1, **{"Idempotency-Key": "order-42"})
    assert again.json()["body"] == {"invocation_id": invocation_id, "status": "succeeded"}
    # The key names that payload: another payload under it is refused, not silently ignored.
    other_payload = await submit(http, fn, 2, **{"Idempotency-Key": "order-42"})
    assert other_payload.status_code == 409
    assert other_payload.json()["code"] == "conflict"
    assert other_payload.json()["details"][0]["path"] == "Idempotency-Key"
    await asyncio.sleep(0.3)
    assert counter.runs[invocation_id] == 1
    assert len(counter.runs) == 2


async def test_nats_publish_with_msg_id_is_deduplicated(
    http: httpx.AsyncClient, nc: Client, make_function: MakeFunction, counter: ExecutionCounter
) -> None:
    fn = await counting_function(make_function, counter)
    js = nc.jetstream()
    job = {"Nats-Msg-Id": "job-1"}
    first = await js.publish(f"{fn.subject}.async", b'{"via":"nats"}', headers=job)
    second = await js.publish(f"{fn.subject}.async", b'{"via":"nats"}', headers=job)
    assert not first.duplicate
    assert second.duplicate
    record = await wait_until_finished(http, fn, "job-1")
    assert record["status"] == "succeeded"
    assert record["output"]["event"] == {"via": "nats"}
    # Without a message id the invocation runs as async-<stream sequence>.
    plain = await js.publish(f"{fn.subject}.async", b"7")
    record = await wait_until_finished(http, fn, f"async-{plain.seq}")
    assert record["output"]["event"] == 7
    await asyncio.sleep(0.3)
    assert counter.runs == {"job-1": 1, f"async-{plain.seq}": 1}


async def test_failing_twice_then_succeeding_takes_three_attempts(
    http: httpx.AsyncClient, make_function: MakeFunction, counter: ExecutionCounter
) -> None:
    fn = await counting_function(make_function, counter, max_attempts=3, FAIL_TIMES=2)
    invocation_id = (await submit(http, fn, {"x": 1})).json()["body"]["invocation_id"]
    record = await wait_until_finished(http, fn, invocation_id)
    assert record["status"] == "succeeded", record
    assert record["attempts"] == 3
    assert record["output"]["run"] == 3
    assert counter.runs == {invocation_id: 3}
    dead = await http.get(f"{fn.path}/dead-letters")
    assert dead.json()["body"] == {"results": [], "results_total": 0}


async def test_always_failing_goes_to_dead_letters_and_redrive_runs_it_again(
    http: httpx.AsyncClient, nc: Client, make_function: MakeFunction, counter: ExecutionCounter
) -> None:
    fn = await counting_function(make_function, counter, max_attempts=2, FAIL_TIMES=2)
    failed_events = await nc.subscribe(f"{fn.subject}.result.failed")
    invocation_id = (await submit(http, fn, {"k": "v"})).json()["body"]["invocation_id"]
    record = await wait_until_finished(http, fn, invocation_id)
    assert record["status"] == "failed", record
    assert record["attempts"] == 2
    assert record["error_code"] == "function_error"
    assert "failing on purpose, run 2" in record["error_message"]
    assert counter.runs == {invocation_id: 2}
    event = await failed_events.next_msg(timeout=5)
    assert msgspec.json.decode(event.data)["invocation_id"] == invocation_id

    dead = (await http.get(f"{fn.path}/dead-letters")).json()["body"]
    assert dead["results_total"] == 1
    letter = dead["results"][0]
    assert letter["invocation_id"] == invocation_id
    assert letter["attempts"] == 2
    assert letter["error_code"] == "function_error"

    # The third run succeeds (FAIL_TIMES=2): redrive gives it a fresh set of attempts.
    redriven = await http.post(f"{fn.path}/invocations/{invocation_id}/retry")
    assert redriven.status_code == 202, redriven.text
    assert redriven.json()["body"] == {"invocation_id": invocation_id, "status": "queued"}
    twice = await http.post(f"{fn.path}/invocations/{invocation_id}/retry")
    assert twice.status_code == 409, twice.text  # queued (or running) again: not failed
    assert twice.json()["code"] == "conflict"
    record = await wait_until_finished(http, fn, invocation_id)
    assert record["status"] == "succeeded", record
    assert record["attempts"] == 1
    assert record["output"] == {"invocation_id": invocation_id, "run": 3, "event": {"k": "v"}}
    dead = (await http.get(f"{fn.path}/dead-letters")).json()["body"]
    assert dead["results_total"] == 0
    again = await http.post(f"{fn.path}/invocations/{invocation_id}/retry")
    assert again.status_code == 409, again.text
    assert "is succeeded" in again.json()["error"]


async def test_invalid_input_fails_at_once_without_retries(
    http: httpx.AsyncClient, make_function: MakeFunction, counter: ExecutionCounter
) -> None:
    fn = await make_function(
        {"index.py": COUNTING_HANDLER},
        runtime="python",
        compute_asset={"network": True, "env_vars": counter.env()},
        schema={"input": {"type": "object", "required": ["n"]}},
        async_config={"max_attempts": 5, "backoff_ms": 10},
    )
    invocation_id = (await submit(http, fn, {"m": 1})).json()["body"]["invocation_id"]
    record = await wait_until_finished(http, fn, invocation_id)
    assert record["status"] == "failed"
    assert record["error_code"] == "invalid_input"
    assert record["attempts"] == 1
    assert counter.runs == {}
    dead = (await http.get(f"{fn.path}/dead-letters")).json()["body"]
    assert [d["error_code"] for d in dead["results"]] == ["invalid_input"]


async def test_still_queued_past_the_deadline_expires_without_running(
    http: httpx.AsyncClient, make_function: MakeFunction, counter: ExecutionCounter
) -> None:
    fn = await counting_function(make_function, counter)
    past = str(int(time.time() * 1000) - 1000)
    response = await submit(http, fn, 1, **{"Compute-Deadline": past})
    assert response.status_code == 202
    invocation_id = response.json()["body"]["invocation_id"]
    record = await wait_until_finished(http, fn, invocation_id)
    assert record["status"] == "failed"
    assert record["error_code"] == "expired"
    assert record["attempts"] == 0
    assert record["deadline"] == int(past)
    # A deadline in the future is met.
    future = str(int(time.time() * 1000) + 60_000)
    ok = (await submit(http, fn, 2, **{"Compute-Deadline": future})).json()["body"]
    assert (await wait_until_finished(http, fn, ok["invocation_id"]))["status"] == "succeeded"
    assert counter.runs == {ok["invocation_id"]: 1}


async def test_a_run_longer_than_the_ack_wait_is_kept_alive_and_runs_once(
    http: httpx.AsyncClient, make_function: MakeFunction, counter: ExecutionCounter
) -> None:
    # The stack's ack wait is 2 s; without in-progress acks the message would be redelivered.
    fn = await counting_function(make_function, counter, SLEEP_S="5")
    invocation_id = (await submit(http, fn)).json()["body"]["invocation_id"]
    record = await wait_until_finished(http, fn, invocation_id, timeout=30)
    assert record["status"] == "succeeded", record
    assert record["attempts"] == 1
    await asyncio.sleep(2.5)
    assert counter.runs == {invocation_id: 1}


async def test_bad_async_requests_name_the_field(
    http: httpx.AsyncClient, make_function: MakeFunction, counter: ExecutionCounter
) -> None:
    fn = await counting_function(make_function, counter)
    bad_deadline = await submit(http, fn, 1, **{"Compute-Deadline": "soon"})
    assert bad_deadline.status_code == 400
    assert bad_deadline.json()["details"][0]["path"] == "Compute-Deadline"
    in_seconds = await submit(http, fn, 1, **{"Compute-Deadline": str(int(time.time()) + 60)})
    assert in_seconds.status_code == 400
    assert "looks like seconds" in in_seconds.json()["error"]
    long_key = await submit(http, fn, 1, **{"Idempotency-Key": "k" * 300})
    assert long_key.status_code == 400
    assert long_key.json()["details"][0]["path"] == "Idempotency-Key"
    missing = await http.post(
        "/compute/functions/tests/000000000/invoke", json={"invocation_type": "Async"}
    )
    assert missing.status_code == 404
    assert missing.json()["code"] == "function_not_found"
    unknown = await http.post(f"{fn.path}/invocations/nope/retry")
    assert unknown.status_code == 404
    await asyncio.sleep(0.2)
    assert counter.runs == {}


async def test_async_config_is_checked_shown_and_patched(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    body = function_body({"index.js": "exports.handler = async () => 1"})
    body["async_config"] = {"max_attempts": 0, "backoff_ms": -1}
    refused = await http.post("/compute/functions", json=body)
    assert refused.status_code == 400
    paths = [d["path"] for d in refused.json()["details"]]
    assert paths == ["/async_config/max_attempts", "/async_config/backoff_ms"]

    fn = await make_function({"index.js": "exports.handler = async () => 1"})
    shown = (await http.get(fn.path)).json()["body"]["async_config"]
    assert shown == {"max_attempts": 3, "backoff_ms": 1000, "max_backoff_ms": 60000}
    # A PATCH changes the fields it names and keeps the others.
    patched = await http.patch(fn.path, json={"async_config": {"backoff_ms": 250}})
    assert patched.status_code == 200, patched.text
    patched = await http.patch(fn.path, json={"async_config": {"max_attempts": 7}})
    assert patched.status_code == 200, patched.text
    shown = (await http.get(fn.path)).json()["body"]["async_config"]
    assert shown == {"max_attempts": 7, "backoff_ms": 250, "max_backoff_ms": 60000}
    # Checked as merged: a backoff over the kept cap is refused, naming the field.
    refused = await http.patch(fn.path, json={"async_config": {"backoff_ms": 120000}})
    assert refused.status_code == 400
    assert refused.json()["details"][0]["path"] == "/async_config/max_backoff_ms"


async def test_a_payload_that_is_not_json_fails_its_record_without_breaking_listings(
    http: httpx.AsyncClient, nc: Client, make_function: MakeFunction
) -> None:
    fn = await make_function({"index.js": "exports.handler = async (e) => e"}, store_payload=True)
    js = nc.jetstream()
    await js.publish(f"{fn.subject}.async", b'{"name":', headers={"Nats-Msg-Id": "broken-1"})
    record = await wait_until_finished(http, fn, "broken-1")
    assert record["status"] == "failed"
    assert record["error_code"] == "invalid_request"
    assert "input" not in record
    reply = await nc.request(fn.subject, b"{oops", timeout=10)
    assert reply.headers is not None and reply.headers["Nats-Service-Error-Code"] == "400"
    listed = await http.get(f"{fn.path}/invocations")
    assert listed.status_code == 200, listed.text
    assert listed.json()["body"]["results_total"] == 2
    # Its dead letter could not keep the payload, so it cannot be sent again.
    [letter] = (await http.get(f"{fn.path}/dead-letters")).json()["body"]["results"]
    assert letter["invocation_id"] == "broken-1"
    assert letter["payload_omitted"] is True
    refused = await http.post(f"{fn.path}/invocations/broken-1/retry")
    assert refused.status_code == 409
    assert refused.json()["code"] == "conflict"


async def test_cli_invoke_async_with_an_idempotency_key(
    http: httpx.AsyncClient, make_function: MakeFunction, counter: ExecutionCounter
) -> None:
    fn = await counting_function(make_function, counter)

    async def cli_invoke() -> dict[str, Any]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "executor.cli",
            "invoke",
            f"{fn.collection}/{fn.body['name']}",
            '{"from": "cli"}',
            "--async",
            "--idempotency-key",
            "cli-1",
            "--api",
            str(http.base_url),
            "--token",
            http.headers["authorization"].split()[1],
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        assert b"HTTP Request" not in err  # no client log line per request
        answer: dict[str, Any] = msgspec.json.decode(out)
        return answer

    first, second = await cli_invoke(), await cli_invoke()
    assert first["invocation_id"] == second["invocation_id"]
    record = await wait_until_finished(http, fn, first["invocation_id"])
    assert record["output"]["event"] == {"from": "cli"}
    assert counter.runs == {first["invocation_id"]: 1}


async def test_a_payload_that_is_not_utf8_fails_once_as_invalid_request(
    http: httpx.AsyncClient, nc: Client, make_function: MakeFunction, counter: ExecutionCounter
) -> None:
    for store_payload in (True, False):
        fn = await make_function(
            {"index.py": COUNTING_HANDLER},
            runtime="python",
            compute_asset={"network": True, "env_vars": counter.env()},
            store_payload=store_payload,
        )
        msg_id = f"latin1-{store_payload}"
        await nc.jetstream().publish(
            f"{fn.subject}.async", b'"caf\xe9"', headers={"Nats-Msg-Id": msg_id}
        )
        record = await wait_until_finished(http, fn, msg_id)
        assert record["status"] == "failed"
        assert record["error_code"] == "invalid_request"
        assert record["attempts"] == 1
    assert counter.runs == {}


async def test_concurrent_submits_of_one_key_with_two_payloads_never_both_pass(
    http: httpx.AsyncClient, make_function: MakeFunction, counter: ExecutionCounter
) -> None:
    fn = await counting_function(make_function, counter)
    for i in range(5):
        key = {"Idempotency-Key": f"race-{i}"}
        first, second = await asyncio.gather(
            submit(http, fn, {"p": 1}, **key), submit(http, fn, {"p": 2}, **key)
        )
        assert sorted([first.status_code, second.status_code]) == [202, 409], (
            first.text,
            second.text,
        )


async def test_retry_refuses_an_invocation_that_succeeded_since(
    http: httpx.AsyncClient, nc: Client, make_function: MakeFunction, counter: ExecutionCounter
) -> None:
    fn = await counting_function(make_function, counter)
    invocation_id = (await submit(http, fn, 1)).json()["body"]["invocation_id"]
    assert (await wait_until_finished(http, fn, invocation_id))["status"] == "succeeded"
    # A dead letter that outlived its successful redrive (its removal failed).
    letters = await DeadLetters.open(
        nc.jetstream(), nc.max_payload, max_age_s=60, max_bytes=1 << 20
    )
    await letters.add(
        DeadLetter(
            invocation_id=invocation_id,
            collection_topic=fn.collection,
            service=fn.service,
            attempts=3,
            error_code="function_error",
            error_message="boom",
            failed_at=1,
            payload=msgspec.Raw(b"1"),
        )
    )
    refused = await http.post(f"{fn.path}/invocations/{invocation_id}/retry")
    assert refused.status_code == 409
    assert "succeeded" in refused.json()["error"]
    await asyncio.sleep(0.3)
    assert counter.runs == {invocation_id: 1}


async def test_a_nats_message_for_an_invocation_already_finished_is_not_run_again(
    http: httpx.AsyncClient, nc: Client, make_function: MakeFunction, counter: ExecutionCounter
) -> None:
    fn = await counting_function(make_function, counter)
    js = nc.jetstream()
    first = {"Compute-Invocation-Id": "once-only", "Nats-Msg-Id": "m1"}
    await js.publish(f"{fn.subject}.async", b"1", headers=first)
    assert (await wait_until_finished(http, fn, "once-only"))["status"] == "succeeded"
    # Another message (so not a stream duplicate) naming the same invocation.
    again = {"Compute-Invocation-Id": "once-only", "Nats-Msg-Id": "m2"}
    ack = await js.publish(f"{fn.subject}.async", b"1", headers=again)
    assert not ack.duplicate
    # The work queue drops a message once it is acked: wait until this function has none left.
    subject = f"{fn.subject}.async"
    deadline = time.monotonic() + 10
    while (await js.stream_info("COMPUTEBUS_ASYNC", subjects_filter=subject)).state.subjects:
        assert time.monotonic() < deadline, "the second message was never settled"
        await asyncio.sleep(0.05)
    assert counter.runs == {"once-only": 1}


async def test_an_async_message_for_an_id_no_function_can_have_is_dropped(nc: Client) -> None:
    js = nc.jetstream()
    subject = "ms.compute.a/b.function.123456789.async"
    await js.publish(subject, b"{}")
    for _ in range(60):
        info = await js.stream_info("COMPUTEBUS_ASYNC", subjects_filter=subject)
        if not info.state.subjects:
            break
        await asyncio.sleep(0.1)
    assert not info.state.subjects, "the message would sit in the queue for ever"
