"""Invocation stats over HTTP against the real stack: exact counts and error rate of what was
invoked, percentiles that are durations of its own records, each record in its bucket; per
function of a collection; bad windows and steps named; the access rules."""

from __future__ import annotations

import asyncio
import math
import uuid
from typing import Any

import httpx

from tests.helpers import Fn, MakeFunction, Stack, wait_for_record

NODE = {
    "index.js": r"""
exports.handler = async (event) => {
  if (event && event.fail) throw new Error('asked to fail');
  return { ok: true };
};
""",
}


async def invoke_all(http: httpx.AsyncClient, fn: Fn, fails: list[bool]) -> list[dict[str, Any]]:
    """Invoke once per entry (failing where True); the records, once each is stored."""
    ids = []
    for fail in fails:
        answer = await http.post(f"{fn.path}/invoke", json={"payload": {"fail": fail}})
        assert answer.status_code == (500 if fail else 200), answer.text
        ids.append(answer.headers["x-invocation-id"])
    return [await wait_for_record(http, fn, invocation_id) for invocation_id in ids]


def nearest_rank(durations: list[float], percent: int) -> float:
    ordered = sorted(durations)
    return ordered[math.ceil(percent / 100 * len(ordered)) - 1]


async def test_a_functions_stats_count_its_invocations_in_their_buckets(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function(NODE)
    other = await make_function(NODE)  # its invocations are not this function's
    records = await invoke_all(http, fn, [False, True])
    await asyncio.sleep(1.0)  # the rest in a later one-second bucket
    records += await invoke_all(http, fn, [False, True, False])
    await invoke_all(http, other, [False])

    answer = await http.get(f"{fn.path}/stats", params={"window": 60, "step": 1})
    assert answer.status_code == 200, answer.text
    stats = answer.json()["body"]
    assert (stats["window_s"], stats["step_s"]) == (60, 1)
    assert stats["until"] - stats["since"] == 60 and stats["complete"] is True
    assert (stats["invocations"], stats["errors"], stats["error_rate"]) == (5, 2, 0.4)
    durations = [r["duration_ms"] for r in records]
    assert stats["p50_ms"] == nearest_rank(durations, 50)
    assert stats["p95_ms"] == nearest_rank(durations, 95) == max(durations)
    series = stats["series"]
    assert [b["t"] for b in series] == [stats["since"] + i for i in range(60)]
    expected = [[0, 0] for _ in series]
    for record in records:
        assert stats["since"] * 1000 <= record["started"] < stats["until"] * 1000
        bucket = expected[(record["started"] - stats["since"] * 1000) // 1000]
        bucket[0] += 1
        bucket[1] += record["status"] == "failed"
    assert [[b["invocations"], b["errors"]] for b in series] == expected
    assert sum(1 for b in series if b["invocations"]) >= 2
    for b in series:
        if b["invocations"]:
            assert b["p50_ms"] in durations and b["p95_ms"] in durations
        else:
            assert b["p50_ms"] is None and b["p95_ms"] is None

    default = (await http.get(f"{fn.path}/stats")).json()["body"]
    assert (default["window_s"], default["step_s"], len(default["series"])) == (3600, 120, 30)
    assert default["invocations"] == 5
    by_name = await http.get(f"/compute/functions/{fn.collection}/{fn.body['name']}/stats")
    assert by_name.json()["body"]["invocations"] == 5


async def test_a_function_without_invocations_has_empty_buckets(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function(NODE)
    stats = (await http.get(f"{fn.path}/stats", params={"window": 300, "step": 100})).json()
    body = stats["body"]
    assert (body["invocations"], body["errors"], body["error_rate"]) == (0, 0, 0)
    assert body["p50_ms"] is None and body["p95_ms"] is None
    assert [(b["invocations"], b["p50_ms"]) for b in body["series"]] == [(0, None)] * 3
    missing = await http.get(f"/compute/functions/{fn.collection}/000000001/stats")
    assert missing.status_code == 404 and missing.json()["code"] == "function_not_found"


async def test_bad_windows_and_steps_are_400_naming_the_field(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function(NODE)
    cases: list[tuple[dict[str, int | str], str]] = [
        ({"window": 59}, "?window"),
        ({"window": 86_401}, "?window"),
        ({"window": "hour"}, "?window"),
        ({"step": 0}, "?step"),
        ({"window": 60, "step": 61}, "?step"),
        ({"window": 3600, "step": 7}, "?step"),  # 515 buckets
    ]
    for params, field in cases:
        answer = await http.get(f"{fn.path}/stats", params=params)
        assert answer.status_code == 400, (params, answer.text)
        error = answer.json()
        assert error["code"] == "invalid_request" and error["details"][0]["path"] == field, params
    refused = await http.get(f"/compute/collections/{fn.collection}/stats", params={"window": 1})
    assert refused.status_code == 400 and refused.json()["details"][0]["path"] == "?window"
    bad = await http.get("/compute/collections/no.dots/stats")
    assert bad.status_code == 400 and bad.json()["details"][0]["path"] == "collection_topic"


async def test_a_collections_stats_have_a_row_per_function_with_invocations(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    ct = f"stats-{uuid.uuid4().hex[:8]}"
    busy, quiet, idle = [await make_function(NODE, collection=ct) for _ in range(3)]
    busy_records, quiet_records = await asyncio.gather(
        invoke_all(http, busy, [False, True, False]), invoke_all(http, quiet, [True])
    )
    answer = await http.get(f"/compute/collections/{ct}/stats", params={"window": 120})
    assert answer.status_code == 200, answer.text
    stats = answer.json()["body"]
    assert (stats["window_s"], stats["complete"], stats["results_total"]) == (120, True, 2)
    rows = {row["service"]: row for row in stats["results"]}
    assert [row["service"] for row in stats["results"]] == sorted(rows)
    assert idle.service not in rows
    busy_row, quiet_row = rows[busy.service], rows[quiet.service]
    assert (busy_row["invocations"], busy_row["errors"]) == (3, 1)
    assert abs(busy_row["error_rate"] - 1 / 3) < 1e-9
    durations = [r["duration_ms"] for r in busy_records]
    assert busy_row["p50_ms"] == nearest_rank(durations, 50)
    assert busy_row["p95_ms"] == max(durations)
    assert quiet_row == {
        "service": quiet.service,
        "invocations": 1,
        "errors": 1,
        "error_rate": 1.0,
        "p50_ms": quiet_records[0]["duration_ms"],
        "p95_ms": quiet_records[0]["duration_ms"],
    }
    # A deleted function's records stay until their TTL, but it is no row of the collection.
    assert (await http.delete(quiet.path)).status_code == 200
    after = (await http.get(f"/compute/collections/{ct}/stats")).json()["body"]
    assert [row["service"] for row in after["results"]] == [busy.service]


async def test_stats_follow_the_read_rules(
    stack: Stack, http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    ct = f"stats-{uuid.uuid4().hex[:8]}"
    fn = await make_function(NODE, collection=ct)
    await invoke_all(http, fn, [False])
    tokens = {}
    for name, scope in [
        ("reader", f"read:{ct}"),
        ("invoker", f"invoke:{ct}"),
        ("stranger", "read:x"),
    ]:
        made = await http.post("/compute/tokens", json={"name": f"{name}-{ct}", "scopes": [scope]})
        tokens[name] = {"Authorization": f"Bearer {made.json()['body']['token']}"}
    collection = f"/compute/collections/{ct}"
    async with httpx.AsyncClient(base_url=stack.api, timeout=30) as anonymous:
        for path in (f"{fn.path}/stats", f"{collection}/stats"):
            refused = await anonymous.get(path)
            assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"

    assert (await http.get(f"{fn.path}/stats", headers=tokens["reader"])).status_code == 200
    hidden = await http.get(f"{fn.path}/stats", headers=tokens["stranger"])
    assert hidden.status_code == 404 and hidden.json()["code"] == "function_not_found"
    forbidden = await http.get(f"{fn.path}/stats", headers=tokens["invoker"])
    assert forbidden.status_code == 403

    read = await http.get(f"{collection}/stats", headers=tokens["reader"])
    assert read.json()["body"]["results_total"] == 1
    for name in ("stranger", "invoker"):  # what the collection's function listing shows them
        listing = await http.get(f"{collection}/functions", headers=tokens[name])
        stats = await http.get(f"{collection}/stats", headers=tokens[name])
        assert stats.status_code == listing.status_code == 200, name
        assert stats.json()["body"]["results"] == listing.json()["body"]["results"] == [], name
        assert stats.json()["body"]["results_total"] == 0
