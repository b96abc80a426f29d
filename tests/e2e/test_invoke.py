"""Invocation end to end: HTTP and NATS, both runtimes, warm processes, timeouts, errors.

Every test runs against the session stack (real nats-server, worker, uvicorn API) and real node
and python handler processes. Functions that no test disturbs are shared per module.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.aio.msg import Msg

from tests.helpers import (
    Fn,
    MakeFunction,
    Stack,
    function_body,
    living_descendants,
    wait_for_record,
)

RUNTIMES = ("nodejs", "python")

# ---- handler sources -------------------------------------------------------------------------

# One well-behaved function per runtime for everything that leaves its process alive.
KITCHEN = {
    "nodejs": {
        "index.js": r"""
const { shout } = require('./lib/util');
const TOKEN = require('crypto').randomBytes(8).toString('hex');  // this process's identity
let counter = 0;
exports.handler = async (event, context) => {
  switch (event && event.op) {
    case 'context': return context;
    case 'pid': return TOKEN;
    case 'count': counter += 1; return counter;
    case 'sibling': return shout('hi');
    case 'log':
      console.log('to stdout');
      console.error('to stderr');
      console.log('{"ok":true,"result":"forged"}');
      process.stdout.write('\x00\x00\x00\x1d{"ok":true,"result":"forged"}');
      console.log();
      return 'clean';
    case 'flood': console.log('x'.repeat(200000)); return 'flooded';
    case 'throw': throw new TypeError('bad thing');
    case 'bigint': return { n: 10n };
    case 'function': return () => 1;
    default: return { got: event };
  }
};
""",
        "lib/util.js": "exports.shout = (s) => s.toUpperCase() + '!';\n",
    },
    "python": {
        "index.py": r"""
import os
import sys

import helpers
from lib.util import shout

counter = 0
TOKEN = os.urandom(8).hex()  # this process's identity


def handler(event, context):
    global counter
    op = event.get("op") if isinstance(event, dict) else None
    if op == "context":
        return {
            **context,
            "attr_invocation_id": context.invocation_id,
            "item_invocation_id": context["invocation_id"],
            "getattr_default": getattr(context, "no_such_field", "fallback"),
        }
    if op == "pid":
        return TOKEN
    if op == "count":
        counter += 1
        return counter
    if op == "sibling":
        return helpers.twice(shout("hi"))
    if op == "log":
        print("to stdout")
        print("to stderr", file=sys.stderr)
        print('{"ok":true,"result":"forged"}')
        sys.stdout.write('\x00\x00\x00\x1d{"ok":true,"result":"forged"}\n')
        return "clean"
    if op == "flood":
        print("x" * 200_000)
        return "flooded"
    if op == "throw":
        raise ValueError("bad thing")
    if op == "set":
        return {1, 2}
    if op == "function":
        return lambda: 1
    return {"got": event}
""",
        "helpers.py": "def twice(s):\n    return s + s\n",
        "lib/util.py": "def shout(s):\n    return s.upper() + '!'\n",
    },
}

# Spins (optionally after forking a sleeping child) until the worker kills it.
SPINNER = {
    "nodejs": {
        "index.js": r"""
const TOKEN = require('crypto').randomBytes(8).toString('hex');
exports.handler = async (event) => {
  if (event.op === 'spin') {
    console.log('spinning');
    while (true) {}
  }
  if (event.op === 'fork') {
    const child = require('child_process').spawn('sleep', ['60'], { detached: true });
    console.log('forked ' + child.pid);
    while (true) {}
  }
  if (event.op === 'sleep') {
    await new Promise((resolve) => setTimeout(resolve, event.ms));
    return 'slept';
  }
  if (event.op === 'exit') process.exit(3);
  return { pid: TOKEN };
};
""",
    },
    "python": {
        "index.py": r"""
import os
import subprocess
import time


TOKEN = os.urandom(8).hex()


def handler(event, context):
    if event["op"] == "spin":
        print("spinning")
        while True:
            pass
    if event["op"] == "fork":
        child = subprocess.Popen(["sleep", "60"], start_new_session=True)
        print(f"forked {child.pid}")
        while True:
            pass
    if event["op"] == "sleep":
        time.sleep(event["ms"] / 1000)
        return "slept"
    if event["op"] == "exit":
        os._exit(3)
    return {"pid": TOKEN}
""",
    },
}

ENTRY = {"nodejs": "index.js", "python": "index.py"}

# ---- helpers ---------------------------------------------------------------------------------


async def create(http: httpx.AsyncClient, files: dict[str, str | bytes], **options: Any) -> Fn:
    body = function_body(files, **options)
    response = await http.post("/compute/functions", json=body)
    assert response.status_code == 201, response.text
    service = response.json()["body"]["compute_asset"]["service"]
    return Fn(body["compute_asset"]["collection_topic"], service, body)


async def invoke(http: httpx.AsyncClient, fn: Fn, payload: Any, **extra: Any) -> httpx.Response:
    return await http.post(f"{fn.path}/invoke", json={"payload": payload, **extra})


async def ok(http: httpx.AsyncClient, fn: Fn, payload: Any) -> Any:
    response = await invoke(http, fn, payload)
    assert response.status_code == 200, response.text
    assert response.headers["x-invocation-id"]
    return response.json()["body"]


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers.get("x-invocation-id"), "errors carry X-Invocation-Id too"
    error: dict[str, Any] = response.json()
    assert error["code"] == code, error
    assert isinstance(error["error"], str) and error["error"]
    return error


async def wait_until_only(before: set[int], timeout: float = 5.0) -> set[int]:
    """Wait until the living processes under this test are a strict subset of ``before``: what
    an invocation killed is gone (reaped or not), and nothing it started survived."""
    deadline = time.monotonic() + timeout
    while True:
        now = living_descendants()
        if now < before:
            return now
        assert time.monotonic() < deadline, f"left alive: {now - before}, kept: {now & before}"
        await asyncio.sleep(0.05)


Shared = Callable[[str], Awaitable[Fn]]


@pytest_asyncio.fixture(scope="module")
async def shared(stack: Stack) -> AsyncIterator[Callable[..., Awaitable[Fn]]]:
    """``await shared(key, files, **options)``: a function created once per module and key."""
    made: dict[str, Fn] = {}
    async with httpx.AsyncClient(base_url=stack.api, timeout=30, headers=stack.auth) as client:

        async def get(key: str, files: dict[str, str | bytes], **options: Any) -> Fn:
            if key not in made:
                made[key] = await create(client, files, **options)
            return made[key]

        yield get


@pytest_asyncio.fixture
async def kitchen(shared: Callable[..., Awaitable[Fn]]) -> Callable[[str], Awaitable[Fn]]:
    async def get(runtime: str) -> Fn:
        return await shared(f"kitchen-{runtime}", KITCHEN[runtime], runtime=runtime)

    return get


@pytest_asyncio.fixture
async def spinner(shared: Callable[..., Awaitable[Fn]]) -> Callable[[str], Awaitable[Fn]]:
    async def get(runtime: str) -> Fn:
        return await shared(f"spinner-{runtime}", SPINNER[runtime], runtime=runtime, timeout=1000)

    return get


# ---- 1. transports and payload forms ---------------------------------------------------------


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize(
    ("payload", "event"),
    [
        ({"a": 1, "b": [True, None]}, {"a": 1, "b": [True, None]}),
        ('{"a": 1, "b": [true, null]}', {"a": 1, "b": [True, None]}),
        ('"hi"', "hi"),
        ("  [1, 2.5] ", [1, 2.5]),
        (42, 42),
        ("42", 42),
        (None, None),
        ("null", None),
        ([], []),
    ],
    ids=[
        "value",
        "json-string",
        "literal-string",
        "padded-json",
        "number",
        "number-string",
        "null",
        "null-string",
        "list",
    ],
)
async def test_http_payload_forms(
    http: httpx.AsyncClient,
    kitchen: Callable[[str], Awaitable[Fn]],
    runtime: str,
    payload: Any,
    event: Any,
) -> None:
    fn = await kitchen(runtime)
    assert await ok(http, fn, payload) == {"got": event}


async def test_http_missing_body_means_null_payload(
    http: httpx.AsyncClient, kitchen: Callable[[str], Awaitable[Fn]]
) -> None:
    fn = await kitchen("python")
    response = await http.post(f"{fn.path}/invoke")
    assert response.status_code == 200, response.text
    assert response.json() == {"body": {"got": None}}


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_nats_request_reply(
    http: httpx.AsyncClient, nc: Client, kitchen: Callable[[str], Awaitable[Fn]], runtime: str
) -> None:
    fn = await kitchen(runtime)
    reply = await nc.request(fn.subject, b'{"x": "y"}', timeout=10)
    assert json.loads(reply.data) == {"got": {"x": "y"}}
    assert reply.headers is not None
    assert "Nats-Service-Error-Code" not in reply.headers
    invocation_id = reply.headers["Compute-Invocation-Id"]
    record = await wait_for_record(http, fn, invocation_id)
    assert record["status"] == "succeeded"

    # An empty body is a null payload; a literal string is plain JSON on NATS.
    reply = await nc.request(fn.subject, b"", timeout=10)
    assert json.loads(reply.data) == {"got": None}
    reply = await nc.request(fn.subject, b'"hi"', timeout=10)
    assert json.loads(reply.data) == {"got": "hi"}


async def test_nats_invalid_json_payload(
    nc: Client, kitchen: Callable[[str], Awaitable[Fn]]
) -> None:
    fn = await kitchen("nodejs")
    reply = await nc.request(fn.subject, b"{nope", timeout=10)
    assert reply.headers is not None
    assert reply.headers["Nats-Service-Error-Code"] == "400"
    body = json.loads(reply.data)
    assert body["code"] == "invalid_request"
    assert body["details"][0]["path"] == "/payload"


# ---- 2. handler shapes -----------------------------------------------------------------------


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_sibling_module(
    http: httpx.AsyncClient, kitchen: Callable[[str], Awaitable[Fn]], runtime: str
) -> None:
    fn = await kitchen(runtime)
    expected = "HI!" if runtime == "nodejs" else "HI!HI!"
    assert await ok(http, fn, {"op": "sibling"}) == expected


async def test_node_sync_handler(http: httpx.AsyncClient, make_function: MakeFunction) -> None:
    fn = await make_function(
        {
            "index.js": "exports.handler = (event, context) =>"
            " ({sync: true, event, rev: context.revision});"
        }
    )
    assert await ok(http, fn, {"a": 1}) == {"sync": True, "event": {"a": 1}, "rev": 1}


async def test_node_handler_returning_undefined_gives_null(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function({"index.js": "exports.handler = async () => {};"})
    assert await ok(http, fn, 1) is None


async def test_python_async_handler(http: httpx.AsyncClient, make_function: MakeFunction) -> None:
    fn = await make_function(
        {
            "index.py": (
                "import asyncio\n\n"
                "async def handler(event, context):\n"
                "    await asyncio.sleep(0.01)\n"
                "    return {'async': True, 'event': event, 'rev': context.revision}\n"
            )
        },
        runtime="python",
    )
    assert await ok(http, fn, {"a": 1}) == {"async": True, "event": {"a": 1}, "rev": 1}
    # The process's event loop survives one coroutine: a second call works too.
    assert await ok(http, fn, 2) == {"async": True, "event": 2, "rev": 1}


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_handler_in_a_folder(
    http: httpx.AsyncClient, make_function: MakeFunction, runtime: str
) -> None:
    if runtime == "nodejs":
        files = {
            "src/app.js": "const h = require('./helper');\nexports.main = async (e) => h.tag(e);\n",
            "src/helper.js": "exports.tag = (e) => ({folder: 'src', e});\n",
        }
    else:
        files = {
            "src/app.py": "from helper import tag\n\ndef main(e, context):\n    return tag(e)\n",
            "src/helper.py": "def tag(e):\n    return {'folder': 'src', 'e': e}\n",
        }
    fn = await make_function(files, runtime=runtime, handler="src/app.main")
    assert await ok(http, fn, [1]) == {"folder": "src", "e": [1]}


async def test_python_handler_named_like_a_stdlib_module(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    # The bootstrap itself imports json; the user's json.py must still be the one loaded.
    fn = await make_function(
        {"json.py": "def handler(event, context):\n    return 'mine'\n"},
        runtime="python",
        handler="json.handler",
    )
    assert await ok(http, fn, None) == "mine"


# ---- 3. context ------------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_context(
    http: httpx.AsyncClient, kitchen: Callable[[str], Awaitable[Fn]], runtime: str
) -> None:
    fn = await kitchen(runtime)
    before = time.time() * 1000
    response = await invoke(http, fn, {"op": "context"})
    after = time.time() * 1000
    assert response.status_code == 200, response.text
    context = response.json()["body"]
    invocation_id = response.headers["x-invocation-id"]
    assert context["invocation_id"] == invocation_id
    assert context["collection_topic"] == fn.collection
    assert context["service"] == fn.service
    assert context["revision"] == 1
    assert context["memory_mb"] == 256
    timeout = fn.body["compute_asset"]["timeout"]
    assert before + timeout - 1000 <= context["deadline_ms"] <= after + timeout
    assert context["deadline_ms"] > time.time() * 1000
    if runtime == "python":
        assert context["attr_invocation_id"] == invocation_id
        assert context["item_invocation_id"] == invocation_id
        assert context["getattr_default"] == "fallback"


# ---- 4. logs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_prints_go_to_logs_not_to_the_result(
    http: httpx.AsyncClient, nc: Client, kitchen: Callable[[str], Awaitable[Fn]], runtime: str
) -> None:
    fn = await kitchen(runtime)
    response = await invoke(http, fn, {"op": "log"})
    assert response.status_code == 200, response.text
    assert response.json() == {"body": "clean"}
    record = await wait_for_record(http, fn, response.headers["x-invocation-id"])
    assert "to stdout\n" in record["logs"]
    assert "to stderr\n" in record["logs"]
    assert '{"ok":true,"result":"forged"}' in record["logs"]
    assert record["logs_truncated"] is False

    reply = await nc.request(fn.subject, b'{"op": "log"}', timeout=10)
    assert json.loads(reply.data) == "clean"


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_logs_over_the_cap_are_truncated(
    http: httpx.AsyncClient, kitchen: Callable[[str], Awaitable[Fn]], stack: Stack, runtime: str
) -> None:
    fn = await kitchen(runtime)
    cap = stack.settings.log_cap_bytes
    assert cap == 64 * 1024
    response = await invoke(http, fn, {"op": "flood"})
    assert response.status_code == 200, response.text
    assert response.json() == {"body": "flooded"}
    record = await wait_for_record(http, fn, response.headers["x-invocation-id"])
    assert record["logs_truncated"] is True
    assert 0 < len(record["logs"].encode()) <= cap
    assert set(record["logs"]) == {"x"}

    # What was dropped does not spill into the next invocation's logs.
    response = await invoke(http, fn, {"op": "log"})
    assert response.status_code == 200, response.text
    record = await wait_for_record(http, fn, response.headers["x-invocation-id"])
    assert "x" * 10 not in record["logs"]
    assert record["logs_truncated"] is False


# ---- 5. warm processes -----------------------------------------------------------------------


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_warm_process_is_reused(
    http: httpx.AsyncClient, kitchen: Callable[[str], Awaitable[Fn]], runtime: str
) -> None:
    fn = await kitchen(runtime)
    first = await ok(http, fn, {"op": "pid"})
    second = await ok(http, fn, {"op": "pid"})
    assert isinstance(first, str)
    assert first == second
    count = await ok(http, fn, {"op": "count"})
    assert await ok(http, fn, {"op": "count"}) == count + 1
    assert await ok(http, fn, {"op": "pid"}) == first


# ---- 6. timeouts -----------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("op", ["spin", "fork"])
async def test_timeout_kills_the_process_and_its_children(
    http: httpx.AsyncClient, spinner: Callable[[str], Awaitable[Fn]], runtime: str, op: str
) -> None:
    fn = await spinner(runtime)
    first = (await ok(http, fn, {"op": "ok"}))["pid"]
    before = living_descendants()
    t0 = time.monotonic()
    response = await invoke(http, fn, {"op": op})
    # A correctness bound, not a benchmark: the worker (not the API's 5 s grace) answered.
    assert time.monotonic() - t0 < 4
    error = assert_error(response, 504, "timeout")
    assert "1000 ms" in error["error"]

    record = await wait_for_record(http, fn, response.headers["x-invocation-id"])
    assert record["status"] == "failed"
    assert record["error_code"] == "timeout"
    assert 1000 <= record["duration_ms"] < 3000
    assert ("forked" if op == "fork" else "spinning") in record["logs"]
    # The process that spun and the child it started in its own session are both gone.
    await wait_until_only(before)

    # A fresh process takes over.
    after = (await ok(http, fn, {"op": "ok"}))["pid"]
    assert after != first


async def test_nats_timeout_header_shortens_the_timeout(
    nc: Client, spinner: Callable[[str], Awaitable[Fn]]
) -> None:
    fn = await spinner("nodejs")
    t0 = time.monotonic()
    reply = await nc.request(
        fn.subject,
        b'{"op": "sleep", "ms": 5000}',
        timeout=5,
        headers={"Compute-Timeout-Ms": "500"},
    )
    assert time.monotonic() - t0 < 4
    assert reply.headers is not None
    assert reply.headers["Nats-Service-Error-Code"] == "504"
    assert "500 ms" in reply.headers["Nats-Service-Error"]
    assert json.loads(reply.data)["code"] == "timeout"


async def test_nats_timeout_header_cannot_extend_the_timeout(
    nc: Client, spinner: Callable[[str], Awaitable[Fn]]
) -> None:
    fn = await spinner("python")
    reply = await nc.request(
        fn.subject,
        b'{"op": "sleep", "ms": 3000}',
        timeout=8,
        headers={"Compute-Timeout-Ms": "60000"},
    )
    assert reply.headers is not None
    assert reply.headers["Nats-Service-Error-Code"] == "504"
    assert "1000 ms" in reply.headers["Nats-Service-Error"]


# ---- 7. errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_handler_throws(
    http: httpx.AsyncClient, kitchen: Callable[[str], Awaitable[Fn]], runtime: str
) -> None:
    fn = await kitchen(runtime)
    response = await invoke(http, fn, {"op": "throw"})
    error = assert_error(response, 500, "function_error")
    kind = "TypeError" if runtime == "nodejs" else "ValueError"
    assert error["details"] == [{"type": kind, "message": "bad thing"}]
    assert "bad thing" in error["error"]
    record = await wait_for_record(http, fn, response.headers["x-invocation-id"])
    assert record["status"] == "failed"
    assert record["error_code"] == "function_error"
    if runtime == "python":
        assert "Traceback (most recent call last)" in record["logs"]
        assert "ValueError: bad thing" in record["logs"]
    else:
        assert "TypeError: bad thing" in record["logs"]
    # The process survives a thrown error.
    assert await ok(http, fn, {"op": "sibling"})


@pytest.mark.parametrize(
    ("runtime", "op"),
    [("nodejs", "bigint"), ("nodejs", "function"), ("python", "set"), ("python", "function")],
)
async def test_result_that_is_not_json(
    http: httpx.AsyncClient, kitchen: Callable[[str], Awaitable[Fn]], runtime: str, op: str
) -> None:
    fn = await kitchen(runtime)
    response = await invoke(http, fn, {"op": op})
    error = assert_error(response, 502, "invalid_output")
    assert "not JSON" in error["error"]
    assert await ok(http, fn, {"op": "sibling"})


SCHEMA = {
    "input": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "out": {},
        },
        "required": ["name"],
    },
    "output": {"type": "object", "properties": {"ok": {"const": True}}, "required": ["ok"]},
}


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_schemas(
    http: httpx.AsyncClient, nc: Client, shared: Callable[..., Awaitable[Fn]], runtime: str
) -> None:
    files = {
        "nodejs": {"index.js": "exports.handler = async (e) => e.out;"},
        "python": {"index.py": "def handler(e, context):\n    return e['out']\n"},
    }[runtime]
    fn = await shared(f"schema-{runtime}", files, runtime=runtime, schema=SCHEMA)

    assert await ok(http, fn, {"name": "n", "out": {"ok": True}}) == {"ok": True}

    response = await invoke(http, fn, {"name": 5, "age": "x", "tags": ["a", 1]})
    error = assert_error(response, 400, "invalid_input")
    paths = sorted(d["path"] for d in error["details"])
    assert paths == ["/age", "/name", "/tags/1"]
    assert all(d["message"] for d in error["details"])

    response = await invoke(http, fn, {"age": 1})
    error = assert_error(response, 400, "invalid_input")
    assert [d["path"] for d in error["details"]] == ["/"]
    assert "name" in error["details"][0]["message"]

    # A JSON-string payload is validated after decoding.
    response = await invoke(http, fn, '{"name": 5}')
    error = assert_error(response, 400, "invalid_input")
    assert [d["path"] for d in error["details"]] == ["/name"]

    response = await invoke(http, fn, {"name": "n", "out": {"ok": False}})
    error = assert_error(response, 502, "invalid_output")
    assert [d["path"] for d in error["details"]] == ["/ok"]
    record = await wait_for_record(http, fn, response.headers["x-invocation-id"])
    assert record["error_code"] == "invalid_output"

    # Over NATS the same validation answers with the same codes.
    reply = await nc.request(fn.subject, b'{"name": "n", "out": 1}', timeout=10)
    assert reply.headers is not None
    assert reply.headers["Nats-Service-Error-Code"] == "502"
    assert json.loads(reply.data)["code"] == "invalid_output"
    reply = await nc.request(fn.subject, b'{"name": []}', timeout=10)
    assert reply.headers is not None
    assert reply.headers["Nats-Service-Error-Code"] == "400"
    assert json.loads(reply.data)["details"][0]["path"] == "/name"


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_handler_not_found(
    http: httpx.AsyncClient, make_function: MakeFunction, runtime: str
) -> None:
    files = {
        "nodejs": {"index.js": "console.log('loaded');\nexports.other = () => 1;\n"},
        "python": {"index.py": "print('loaded')\n\ndef other(e, c):\n    return 1\n"},
    }[runtime]
    fn = await make_function(files, runtime=runtime)
    for _ in range(3):  # stable on repeated calls, not just on a cold process
        response = await invoke(http, fn, 1)
        error = assert_error(response, 500, "handler_not_found")
        assert ENTRY[runtime] in error["error"]
        assert "handler" in error["error"]
        assert error["details"] == [{"file": ENTRY[runtime], "export": "handler"}]
        # The module's output while loading is in this (warm) call's record too.
        record = await wait_for_record(http, fn, response.headers["x-invocation-id"])
        assert record["error_code"] == "handler_not_found"
        assert record["logs"].strip() == "loaded"


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_module_that_throws_at_load(
    http: httpx.AsyncClient, make_function: MakeFunction, runtime: str
) -> None:
    files = {
        "nodejs": {"index.js": "throw new RangeError('load boom');\nexports.handler = () => 1;\n"},
        "python": {"index.py": "raise KeyError('load boom')\n\ndef handler(e, c):\n    return 1\n"},
    }[runtime]
    body = function_body(files, runtime=runtime)
    # Caught by the load check at create: nothing is left behind, the name stays free.
    response = await http.post("/compute/functions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["code"] == "invalid_request"
    assert "load boom" in error["error"], error
    assert error["details"][0]["path"] == "/compute_asset/assets"
    assert error["details"][0]["reason"] == "function_error"
    collection = body["compute_asset"]["collection_topic"]
    gone = await http.get(f"/compute/functions/{collection}/{body['name']}")
    assert gone.status_code == 404


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_a_syntax_error_is_refused_at_create(http: httpx.AsyncClient, runtime: str) -> None:
    files = {
        "nodejs": {"index.js": "exports.handler = async (e) => {\n"},
        "python": {"index.py": "def handler(e, c)\n    return 1\n"},
    }[runtime]
    response = await http.post("/compute/functions", json=function_body(files, runtime=runtime))
    assert response.status_code == 400, response.text
    assert "SyntaxError" in response.json()["error"], response.text


async def test_node_uncaught_exception_answers_only_its_own_invocation(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function(
        {
            "index.js": r"""
exports.handler = async (event) => {
  if (event === 'late') {
    setTimeout(() => { throw new Error('thrown from a timer'); }, 10);
    await new Promise((resolve) => setTimeout(resolve, 400));
    return 'stale result of the first call';
  }
  await new Promise((resolve) => setTimeout(resolve, 800));
  return 'second';
};
"""
        }
    )
    response = await invoke(http, fn, '"late"')
    error = assert_error(response, 500, "function_error")
    assert error["details"] == [{"type": "Error", "message": "thrown from a timer"}]
    # The first handler's promise resolves while the second call runs: that value is not the
    # second call's answer.
    assert await ok(http, fn, '"next"') == "second"


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_handler_exits_the_process(
    http: httpx.AsyncClient, spinner: Callable[[str], Awaitable[Fn]], runtime: str
) -> None:
    fn = await spinner(runtime)
    before = (await ok(http, fn, {"op": "ok"}))["pid"]
    processes = living_descendants()
    response = await invoke(http, fn, {"op": "exit"})
    error = assert_error(response, 500, "function_error")
    assert "died" in error["error"] or "exit" in error["error"]
    await wait_until_only(processes)
    after = (await ok(http, fn, {"op": "ok"}))["pid"]
    assert after != before


async def test_invalid_json_payload_string(
    http: httpx.AsyncClient, kitchen: Callable[[str], Awaitable[Fn]]
) -> None:
    fn = await kitchen("nodejs")
    for payload in ("{not json", "hi", ""):
        response = await invoke(http, fn, payload)
        error = assert_error(response, 400, "invalid_request")
        assert "/payload" in error["error"]
        assert [d["path"] for d in error["details"]] == ["/payload"]


async def test_bad_request_bodies(
    http: httpx.AsyncClient, kitchen: Callable[[str], Awaitable[Fn]]
) -> None:
    fn = await kitchen("nodejs")
    response = await invoke(http, fn, 1, invocation_type="Bogus")
    error = assert_error(response, 400, "invalid_request")
    assert error["details"][0]["path"] == "/invocation_type"

    response = await http.post(f"{fn.path}/invoke", content=b"{nope")
    assert_error(response, 400, "invalid_request")

    response = await http.post(f"{fn.path}/invoke", json={"payload": 1, "extra": 2})
    error = assert_error(response, 400, "invalid_request")
    assert error["details"][0]["path"] == "/extra"

    assert await ok(http, fn, {"op": "sibling"}) == "HI!"
    response = await invoke(http, fn, 7, invocation_type="RequestResponse")
    assert response.json() == {"body": {"got": 7}}


# ---- 8. unknown functions --------------------------------------------------------------------


async def test_unknown_function_over_http(http: httpx.AsyncClient) -> None:
    response = await http.post("/compute/functions/tests/000000000/invoke", json={"payload": 1})
    assert_error(response, 404, "function_not_found")
    response = await http.post("/compute/functions/nosuchcollection/123456789/invoke", json={})
    assert_error(response, 404, "function_not_found")


async def test_unknown_function_over_nats(nc: Client) -> None:
    for subject in ("ms.compute.tests.function.000000000", "ms.compute.nope.function.abc"):
        reply = await nc.request(subject, b"{}", timeout=3)
        assert reply.headers is not None
        assert reply.headers["Nats-Service-Error-Code"] == "404"
        assert reply.headers["Nats-Service-Error"]
        body = json.loads(reply.data)
        assert body["code"] == "function_not_found"
        assert body["error"]


# ---- 9. NATS request headers -----------------------------------------------------------------


async def test_nats_revision_and_alias_headers(
    nc: Client, kitchen: Callable[[str], Awaitable[Fn]]
) -> None:
    fn = await kitchen("nodejs")

    async def request(headers: dict[str, str]) -> Msg:
        return await nc.request(fn.subject, b"5", timeout=5, headers=headers)

    for good in ({"Compute-Revision": "1"}, {"Compute-Alias": "production"}):
        reply = await request(good)
        assert json.loads(reply.data) == {"got": 5}

    for missing in ({"Compute-Revision": "99"}, {"Compute-Alias": "staging"}):
        reply = await request(missing)
        assert reply.headers is not None
        assert reply.headers["Nats-Service-Error-Code"] == "404"
        assert json.loads(reply.data)["code"] in ("not_found", "function_not_found")

    for bad in (
        {"Compute-Revision": "abc"},
        {"Compute-Revision": "-1"},
        {"Compute-Timeout-Ms": "soon"},
        {"Compute-Timeout-Ms": "0"},
    ):
        reply = await request(bad)
        assert reply.headers is not None
        assert reply.headers["Nats-Service-Error-Code"] == "400", bad
        body = json.loads(reply.data)
        assert body["code"] == "invalid_request"
        assert body["details"][0]["path"] == next(iter(bad))


# ---- size limits -------------------------------------------------------------------------------


async def test_payload_over_the_limit_is_413(
    http: httpx.AsyncClient, stack: Stack, make_function: MakeFunction
) -> None:
    fn = await make_function({"index.js": "exports.handler = async (e) => e;"})
    limit = stack.settings.max_payload_bytes
    response = await invoke(http, fn, {"s": "x" * limit})
    error = assert_error(response, 413, "payload_too_large")
    assert str(limit) in error["error"]
    # Nothing ran, so nothing was recorded.
    listed = await http.get(f"{fn.path}/invocations")
    assert listed.json()["body"]["results_total"] == 0


async def test_result_over_the_limit_is_413_and_recorded(
    http: httpx.AsyncClient, stack: Stack, make_function: MakeFunction
) -> None:
    size = stack.settings.max_payload_bytes + 1
    fn = await make_function(
        {"index.js": f"exports.handler = async (e) => e ? 'x'.repeat({size}) : 'small';"}
    )
    response = await invoke(http, fn, True)
    error = assert_error(response, 413, "payload_too_large")
    assert "result" in error["error"]
    record = await wait_for_record(http, fn, response.headers["x-invocation-id"])
    assert record["error_code"] == "payload_too_large"
    assert "output" not in record
    assert (await ok(http, fn, False)) == "small"  # the process is still fine


async def test_a_function_subject_with_a_name_says_it_takes_the_service_id(
    nc: Client, make_function: MakeFunction
) -> None:
    fn = await make_function({"index.js": "exports.handler = async (e) => e;\n"})
    reply = await nc.request(
        f"ms.compute.{fn.collection}.function.{fn.body['name']}", b"1", timeout=10
    )
    assert (reply.headers or {})["Nats-Service-Error-Code"] == "404"
    assert "service id" in json.loads(reply.data)["error"]
