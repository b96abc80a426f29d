"""Access control over HTTP against the real stack: every route is guarded or on the public list,
tokens and their scopes (401, 403, and 404 for a collection the token cannot see), revocation
on every API process, public functions, and each bad credential a caller can send."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import stat
import time
import uuid
from typing import Any

import httpx
import nats.js.errors
import pytest
from nats.aio.client import Client
from starlette.routing import Route

from bus import subjects
from executor.api.access import ALWAYS_PUBLIC, OPS_PATHS, ROUTED_PATHS
from executor.api.app import build_app
from schemas.tokens import ADMIN_TOKEN_FILE
from tests.helpers import MakeFunction, Stack, function_body, second_api, wait_for_record

NODE_ECHO = {"index.js": "exports.handler = async (event) => ({ got: event });\n"}


def collection() -> str:
    return f"acl-{uuid.uuid4().hex[:8]}"


async def token(http: httpx.AsyncClient, *scopes: str, **more: Any) -> str:
    answer = await http.post(
        "/compute/tokens",
        json={"name": f"t-{uuid.uuid4().hex[:6]}", "scopes": list(scopes), **more},
    )
    assert answer.status_code == 201, answer.text
    secret: str = answer.json()["body"]["token"]
    return secret


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def route_table() -> list[Route]:
    class _Ctx:  # what build_app reads
        tokens = view = None
        settings = type("S", (), {"ops_open": False, "cors_origins": ()})()

    app = build_app(_Ctx())  # type: ignore[arg-type]
    return [route for route in app.routes if isinstance(route, Route)]


def test_every_route_is_guarded_or_public() -> None:
    unguarded = [
        f"{sorted(route.methods or [])} {route.path}"
        for route in route_table()
        if not hasattr(route.endpoint, "rule") and route.path not in ALWAYS_PUBLIC | ROUTED_PATHS
    ]
    assert unguarded == []
    assert {r.path for r in route_table()} >= OPS_PATHS


def _filled(path: str, ct: str, ft: str) -> str:
    values = {"ct": ct, "ft": ft, "id": "inv-1", "n": "1", "alias": "production", "name": "nightly"}
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


async def test_every_compute_route_refuses_a_request_without_a_token(
    stack: Stack, make_function: MakeFunction
) -> None:
    fn = await make_function(NODE_ECHO)
    async with httpx.AsyncClient(base_url=stack.api, timeout=30) as anonymous:
        for route in route_table():
            if not route.path.startswith("/compute"):
                continue
            for method in sorted((route.methods or set()) - {"HEAD"}):
                answer = await anonymous.request(
                    method, _filled(route.path, fn.collection, fn.service)
                )
                where = f"{method} {route.path}"
                assert answer.status_code == 401, f"{where}: {answer.status_code} {answer.text}"
                assert answer.json()["code"] == "unauthorized", where
                assert answer.headers["www-authenticate"].startswith("Bearer"), where
        for path in ("/healthz", "/readyz"):
            assert (await anonymous.get(path)).status_code in (200, 503)


async def test_the_admin_token_file_is_private(stack: Stack) -> None:
    path = stack.settings.data_dir / ADMIN_TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == stack.token


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({"Authorization": "Bearer"}, "no token after Bearer"),
        ({"Authorization": "Bearer  x"}, "two spaces"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "not the Bearer scheme"),
        ({"Authorization": "Bearer cbt_has spaces in it"}, "spaces"),
        ({"Authorization": "Bearer " + "x" * 10_000}, "10 kB"),
        ({"Authorization": "Bearer cbt_0123456789abcdef_forged"}, "unknown id"),
        ({"X-Api-Key": "nonsense"}, "a malformed key"),
    ],
)
async def test_a_bad_credential_is_401_never_500(
    stack: Stack, headers: dict[str, str], why: str
) -> None:
    async with httpx.AsyncClient(base_url=stack.api, timeout=30) as client:
        answer = await client.get("/compute/functions", headers=headers)
    assert answer.status_code == 401, (why, answer.text)
    assert answer.json()["code"] == "unauthorized"
    assert "x" * 100 not in answer.text  # the presented secret is not echoed


async def test_two_credentials_at_once_are_refused(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.api, timeout=30) as client:
        both = await client.get(
            "/compute/functions",
            headers=[("Authorization", f"Bearer {stack.token}"), ("Authorization", "Bearer b")],
        )
        mixed = await client.get(
            "/compute/functions", headers={**bearer(stack.token), "X-Api-Key": stack.token}
        )
    assert both.status_code == 401 and "one token" in both.json()["error"]
    assert mixed.status_code == 401


async def test_x_api_key_is_taken_like_a_bearer_token(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.api, timeout=30) as client:
        answer = await client.get("/compute/functions", headers={"X-Api-Key": stack.token})
    assert answer.status_code == 200


async def test_scopes_decide_what_a_token_may_do(http: httpx.AsyncClient) -> None:
    ct, other = collection(), collection()
    created = await http.post("/compute/functions", json=function_body(NODE_ECHO, collection=ct))
    assert created.status_code == 201
    path = f"/compute/functions/{ct}/{created.json()['body']['compute_asset']['service']}"
    reader = bearer(await token(http, f"read:{ct}"))
    invoker = bearer(await token(http, f"invoke:{ct}"))
    deployer = bearer(await token(http, "deploy:acl-*"))
    stranger = bearer(await token(http, f"read:{other}"))

    assert (await http.get(path, headers=reader)).status_code == 200
    refused = await http.post(f"{path}/invoke", json={"payload": 1}, headers=reader)
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert (await http.patch(path, json={"description": "x"}, headers=reader)).status_code == 403

    ran = await http.post(f"{path}/invoke", json={"payload": 1}, headers=invoker)
    assert ran.status_code == 200 and ran.json()["body"] == {"got": 1}
    assert (await http.get(path, headers=invoker)).status_code == 403

    # A collection the token has no scope on does not exist for it.
    hidden = await http.get(path, headers=stranger)
    assert hidden.status_code == 404 and hidden.json()["code"] == "function_not_found"
    hidden = await http.post(f"{path}/invoke", json={"payload": 1}, headers=stranger)
    assert hidden.status_code == 404

    # deploy (which implies read) on a pattern: create and change in matching collections only.
    elsewhere = function_body(NODE_ECHO, collection=f"x{other}")
    assert (
        await http.post("/compute/functions", json=elsewhere, headers=deployer)
    ).status_code == 403
    made = await http.post(
        "/compute/functions", json=function_body(NODE_ECHO, collection=other), headers=deployer
    )
    assert made.status_code == 201, made.text
    assert (await http.patch(path, json={"description": "y"}, headers=deployer)).status_code == 200
    assert (await http.get(path, headers=deployer)).status_code == 200

    # Listings show only what the token may read.
    listed = await http.get("/compute/functions", headers=stranger)
    assert {f["compute_asset"]["collection_topic"] for f in listed.json()["body"]["results"]} == {
        other
    }
    counted = await http.get("/compute/collections", headers=reader)
    assert [c["collection_topic"] for c in counted.json()["body"]["results"]] == [ct]
    assert (await http.get("/compute/tokens", headers=reader)).status_code == 403


@pytest.mark.parametrize(
    ("ask", "field"),
    [
        ({"scopes": ["write:team"]}, "/scopes/0"),
        ({"scopes": ["admin", "read:team a"]}, "/scopes/1"),
        ({"scopes": ["read:*team"]}, "/scopes/0"),
        ({"scopes": ["read"]}, "/scopes/0"),
        ({"scopes": []}, "/scopes"),
        ({"scopes": ["admin"], "expires_in_s": -5}, "/expires_in_s"),
        ({"scopes": ["admin"], "expires_in_s": 10**12}, "/expires_in_s"),
        ({"scopes": ["admin"], "name": ""}, "/name"),
        ({"scopes": ["admin"], "name": "a\nb"}, "/name"),
        ({"scopes": ["admin"], "colour": "red"}, "colour"),
    ],
)
async def test_a_bad_token_request_is_400_naming_the_field(
    http: httpx.AsyncClient, ask: dict[str, Any], field: str
) -> None:
    answer = await http.post("/compute/tokens", json={"name": "bad", **ask})
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "invalid_request"
    assert field in answer.text


async def test_tokens_are_listed_without_secrets_and_stored_only_as_a_hash(
    http: httpx.AsyncClient, nc: Client
) -> None:
    answer = await http.post(
        "/compute/tokens", json={"name": "ci", "scopes": ["read:*"], "expires_in_s": 3600}
    )
    created = answer.json()["body"]
    secret = created["token"]
    assert secret.startswith("cbt_") and len(secret) >= 40
    assert created["expires"] - created["created"] == 3_600_000
    listed = (await http.get("/compute/tokens")).json()["body"]["results"]
    mine = [t for t in listed if t["id"] == created["id"]]
    assert mine and "token" not in mine[0] and mine[0]["scopes"] == ["read:*"]
    kv = await nc.jetstream().key_value(subjects.TOKENS_BUCKET)
    stored = (await kv.get(created["id"])).value or b""
    assert secret.encode() not in stored and secret.split("_", 2)[2].encode() not in stored
    assert b"secret_sha256" in stored


async def test_a_revoked_token_stops_working_on_every_api_within_two_seconds(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    secret = await token(http, "read:*")
    token_id = secret.split("_")[1]
    async with second_api(stack) as other:
        assert (await other.get("/compute/functions", headers=bearer(secret))).status_code == 200
        assert (await http.delete(f"/compute/tokens/{token_id}")).status_code == 200
        deadline = time.monotonic() + 2
        while (await other.get("/compute/functions", headers=bearer(secret))).status_code != 401:
            assert time.monotonic() < deadline, "the other API still takes the revoked token"
            await asyncio.sleep(0.05)
    answer = await http.get("/compute/functions", headers=bearer(secret))
    assert answer.status_code == 401 and "revoked" in answer.json()["error"]
    assert (await http.delete(f"/compute/tokens/{token_id}")).status_code == 404


async def test_an_expired_token_is_401(http: httpx.AsyncClient) -> None:
    secret = await token(http, "read:*", expires_in_s=1)
    assert (await http.get("/compute/functions", headers=bearer(secret))).status_code == 200
    await asyncio.sleep(1.2)
    answer = await http.get("/compute/functions", headers=bearer(secret))
    assert answer.status_code == 401 and "expired" in answer.json()["error"]


async def test_the_last_admin_token_cannot_be_revoked(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    listed = (await http.get("/compute/tokens")).json()["body"]["results"]
    admins = [t for t in listed if "admin" in t["scopes"]]
    for extra in admins:  # leave only the stack's own admin token
        if extra["id"] != stack.token.split("_")[1]:
            await http.delete(f"/compute/tokens/{extra['id']}")
    refused = await http.delete(f"/compute/tokens/{stack.token.split('_')[1]}")
    assert refused.status_code == 409 and "last admin token" in refused.json()["error"]
    expiring = await token(http, "admin", expires_in_s=3600)  # no lasting way in: not counted
    refused = await http.delete(f"/compute/tokens/{stack.token.split('_')[1]}")
    assert refused.status_code == 409
    assert (await http.delete(f"/compute/tokens/{expiring.split('_')[1]}")).status_code == 200
    second = await token(http, "admin")
    second_id = second.split("_")[1]
    assert (await http.delete(f"/compute/tokens/{second_id}")).status_code == 200


async def test_a_public_function_is_invoked_without_a_token_and_nothing_else_is(
    stack: Stack, http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function(NODE_ECHO, access={"public_invoke": True})
    closed = await make_function(NODE_ECHO)
    async with httpx.AsyncClient(base_url=stack.api, timeout=30) as anonymous:
        ran = await anonymous.post(f"{fn.path}/invoke", json={"payload": 2})
        assert ran.status_code == 200 and ran.json()["body"] == {"got": 2}
        name = fn.body["name"]
        by_name = await anonymous.post(f"/compute/functions/{fn.collection}/{name}/invoke", json={})
        assert by_name.status_code == 200
        assert (await anonymous.get(fn.path)).status_code == 401
        assert (await anonymous.get(f"{fn.path}/invocations")).status_code == 401
        assert (await anonymous.post(f"{closed.path}/invoke", json={})).status_code == 401
    elsewhere = bearer(await token(http, f"read:{collection()}"))
    ran = await http.post(f"{fn.path}/invoke", json={"payload": 5}, headers=elsewhere)
    assert ran.status_code == 200  # a token of another collection takes nothing away
    shown = (await http.get(fn.path)).json()["body"]
    assert shown["access"] == {"public_invoke": True}
    closing = await http.patch(fn.path, json={"access": {"public_invoke": False}})
    assert closing.status_code == 200, closing.text
    async with httpx.AsyncClient(base_url=stack.api, timeout=30) as anonymous:
        assert (await anonymous.post(f"{fn.path}/invoke", json={})).status_code == 401


async def test_failed_checks_from_one_address_are_slowed(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.api, timeout=30) as client:
        headers = bearer("cbt_0123456789abcdef_wrong")
        for _ in range(8):
            await client.get("/compute/runtimes", headers=headers)
        started = time.monotonic()
        answer = await client.get("/compute/runtimes", headers=headers)
        slowed = time.monotonic() - started
    assert answer.status_code == 401
    assert slowed >= 0.4  # the ninth failure in a minute waits 0.05 * 2**4 s


async def test_a_browser_on_an_allowed_origin_can_invoke_with_a_token(
    stack: Stack, make_function: MakeFunction
) -> None:
    fn = await make_function(NODE_ECHO)
    page = "http://app.test:3000"
    async with second_api(stack, cors_origins=(page,)) as api:
        preflight = await api.options(
            f"{fn.path}/invoke",
            headers={
                "Origin": page,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 204, preflight.text
        assert preflight.headers["access-control-allow-origin"] == page
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        ran = await api.post(f"{fn.path}/invoke", json={"payload": 3}, headers={"Origin": page})
        assert ran.status_code == 200 and ran.json()["body"] == {"got": 3}
        assert ran.headers["access-control-allow-origin"] == page
        assert "x-invocation-id" in ran.headers["access-control-expose-headers"].lower()

        stranger = "http://evil.test"
        refused = await api.options(
            f"{fn.path}/invoke",
            headers={"Origin": stranger, "Access-Control-Request-Method": "POST"},
        )
        assert refused.status_code == 400
        assert refused.headers.get("access-control-allow-origin") != stranger
        other = await api.post(f"{fn.path}/invoke", json={}, headers={"Origin": stranger})
        assert "access-control-allow-origin" not in other.headers


async def test_a_function_over_its_rate_is_429_with_retry_after(
    http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function(NODE_ECHO, limits={"rps": 1, "burst": 2})
    # The burst (2, or less while this API still counts one that just stopped), then 429.
    codes = [
        (await http.post(f"{fn.path}/invoke", json={"payload": i})).status_code for i in range(3)
    ]
    assert codes[0] == 200 and codes[-1] == 429, codes
    refused = await http.post(f"{fn.path}/invoke", json={"payload": 3})
    assert refused.status_code == 429, refused.text
    assert refused.json()["code"] == "rate_limited"
    wait_s = int(refused.headers["retry-after"])
    assert 1 <= wait_s <= 2
    other = await make_function(NODE_ECHO)  # another function is not touched
    assert (await http.post(f"{other.path}/invoke", json={})).status_code == 200
    await asyncio.sleep(wait_s + 0.1)
    assert (await http.post(f"{fn.path}/invoke", json={})).status_code == 200


@pytest.mark.parametrize(
    ("limits", "field"),
    [
        ({"rps": 0}, "/limits/rps"),
        ({"rps": 5e-324}, "/limits/rps"),
        ({"rps": -3}, "/limits/rps"),
        ({"rps": 5, "burst": -1}, "/limits/burst"),
        ({"rps": 5, "burst": 0}, "/limits/burst"),
        ({"burst": 5}, "/limits/burst"),
    ],
)
async def test_bad_rate_limits_are_400_naming_the_field(
    http: httpx.AsyncClient, limits: dict[str, Any], field: str
) -> None:
    answer = await http.post("/compute/functions", json=function_body(NODE_ECHO, limits=limits))
    assert answer.status_code == 400, answer.text
    assert answer.json()["details"][0]["path"] == field


async def test_two_apis_share_a_functions_rate(
    stack: Stack, http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    fn = await make_function(NODE_ECHO, limits={"rps": 4, "burst": 4})
    async with second_api(stack) as other:
        await asyncio.sleep(2.5)  # both APIs have counted each other
        started = time.monotonic()
        answers = []
        for i in range(40):
            client = http if i % 2 else other
            answers.append((await client.post(f"{fn.path}/invoke", json={})).status_code)
        elapsed = time.monotonic() - started
    accepted = answers.count(200)
    assert set(answers) == {200, 429}
    # The burst (4, two on each API) and what 4/s refills meanwhile; not 4 on each.
    assert 4 <= accepted <= 4 + 4 * elapsed + 1, (accepted, elapsed)


async def test_records_say_who_called_and_a_nats_caller_cannot_pose_as_a_token(
    stack: Stack, http: httpx.AsyncClient, nc: Client, make_function: MakeFunction
) -> None:
    fn = await make_function(NODE_ECHO, access={"public_invoke": True})
    secret = await token(http, "invoke:*", "read:*")
    token_id = secret.split("_")[1]
    ran = await http.post(f"{fn.path}/invoke", json={"payload": 1}, headers=bearer(secret))
    record = await wait_for_record(http, fn, ran.headers["x-invocation-id"])
    assert record["caller"]["via"] == "token" and record["caller"]["token_id"] == token_id
    assert record["caller"]["name"].startswith("t-")

    async with httpx.AsyncClient(base_url=stack.api, timeout=30) as anonymous:
        ran = await anonymous.post(f"{fn.path}/invoke", json={"payload": 2})
    assert (await wait_for_record(http, fn, ran.headers["x-invocation-id"]))["caller"] == {
        "via": "public"
    }

    forged = {"Compute-Caller": '{"via":"token","token_id":"0123456789abcdef","name":"admin"}'}
    reply = await nc.request(fn.subject, b"3", timeout=10, headers=forged)
    invocation_id = (reply.headers or {})["Compute-Invocation-Id"]
    assert (await wait_for_record(http, fn, invocation_id))["caller"] == {"via": "nats"}

    queued = await http.post(
        f"{fn.path}/invoke",
        json={"payload": 4, "invocation_type": "Async"},
        headers=bearer(secret),
    )
    async_id = queued.json()["body"]["invocation_id"]
    deadline = time.monotonic() + 10
    while (done := await wait_for_record(http, fn, async_id))["status"] != "succeeded":
        assert time.monotonic() < deadline, done
        await asyncio.sleep(0.05)
    assert done["caller"]["token_id"] == token_id


async def test_a_tokens_last_use_is_listed(http: httpx.AsyncClient) -> None:
    secret = await token(http, "read:*")
    token_id = secret.split("_")[1]

    async def listed() -> dict[str, Any]:
        found = (await http.get("/compute/tokens")).json()["body"]["results"]
        return next(t for t in found if t["id"] == token_id)

    assert (await listed())["last_used"] == 0
    before = int(time.time() * 1000)
    assert (await http.get("/compute/functions", headers=bearer(secret))).status_code == 200
    deadline = time.monotonic() + 5
    while (used := (await listed())["last_used"]) == 0:
        assert time.monotonic() < deadline, "last_used was never written"
        await asyncio.sleep(0.05)
    assert used >= before - 1000


async def test_a_nats_caller_cannot_make_the_worker_publish_elsewhere_or_reuse_an_id(
    http: httpx.AsyncClient, nc: Client, make_function: MakeFunction
) -> None:
    fn = await make_function(NODE_ECHO)
    js = nc.jetstream()
    config = {"name": "EVIL", "subjects": ["evil.>"], "storage": "memory"}
    await nc.publish(fn.subject, json.dumps(config).encode(), reply="$JS.API.STREAM.CREATE.EVIL")
    await nc.flush()
    await asyncio.sleep(0.5)
    with pytest.raises(nats.js.errors.NotFoundError):
        await js.stream_info("EVIL")

    ran = await http.post(f"{fn.path}/invoke", json={"payload": {"v": "mine"}})
    victim = ran.headers["x-invocation-id"]
    await wait_for_record(http, fn, victim)
    reply = await nc.request(
        fn.subject, b'"theirs"', timeout=10, headers={"Compute-Invocation-Id": victim}
    )
    assert (reply.headers or {})["Compute-Invocation-Id"] != victim
    kept = await wait_for_record(http, fn, victim)
    assert kept["output"] == {"got": {"v": "mine"}} and kept["caller"]["via"] == "token"


async def test_an_idempotency_keys_invocation_id_cannot_be_taken_first_over_nats(
    http: httpx.AsyncClient, nc: Client, make_function: MakeFunction
) -> None:
    fn = await make_function(NODE_ECHO)
    guessable = hashlib.sha256(f"{fn.collection}\0{fn.service}\0order-9".encode()).hexdigest()
    await nc.jetstream().publish(
        f"{fn.subject}.async",
        b'"theirs"',
        headers={"Nats-Msg-Id": guessable[:32], "Compute-Invocation-Id": guessable[:32]},
    )
    queued = await http.post(
        f"{fn.path}/invoke",
        json={"payload": {"v": "mine"}, "invocation_type": "Async"},
        headers={"Idempotency-Key": "order-9"},
    )
    assert queued.status_code == 202 and queued.json()["body"]["status"] == "queued"
    invocation_id = queued.json()["body"]["invocation_id"]
    assert invocation_id != guessable[:32]
    deadline = time.monotonic() + 10
    while (record := await wait_for_record(http, fn, invocation_id))["status"] != "succeeded":
        assert time.monotonic() < deadline, record
        await asyncio.sleep(0.05)
    assert record["output"] == {"got": {"v": "mine"}}


async def test_async_messages_for_invented_collections_get_no_stream_and_leave_the_queue(
    stack: Stack, nc: Client
) -> None:
    js = nc.jetstream()
    ghosts = [f"ghost{uuid.uuid4().hex[:8]}" for _ in range(5)]
    for ct in ghosts:
        await js.publish(f"ms.compute.{ct}.function.111111111.async", b"{}")
    deadline = time.monotonic() + 15
    while True:
        info = await js.stream_info(subjects.ASYNC_STREAM, subjects_filter=subjects.ASYNC_WILDCARD)
        left = [s for s in (info.state.subjects or {}) if s.split(".")[2] in ghosts]
        if not left:
            break
        assert time.monotonic() < deadline, left
        await asyncio.sleep(0.1)
    for ct in ghosts:
        with pytest.raises(nats.js.errors.NotFoundError):
            await js.stream_info(subjects.monitor_stream(ct))


async def test_a_trailing_slash_is_a_404_not_a_redirect_to_the_host_header(
    http: httpx.AsyncClient,
) -> None:
    answer = await http.get("/compute/functions/", headers={"Host": "evil.test"})
    assert answer.status_code == 404 and "location" not in answer.headers
