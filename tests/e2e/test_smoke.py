from __future__ import annotations

import httpx

from tests.helpers import MakeFunction, wait_for_record


async def test_node_function_answers_over_http(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function(
        {"index.js": "exports.handler = async (e) => { console.log('hi'); return {got: e}; };"}
    )
    response = await http.post(f"{fn.path}/invoke", json={"payload": {"a": 1}})
    assert response.status_code == 200, response.text
    assert response.json() == {"body": {"got": {"a": 1}}}
    record = await wait_for_record(http, fn, response.headers["x-invocation-id"])
    assert record["status"] == "succeeded"
    assert record["logs"] == "hi\n"
