"""The web console in a real headless Chromium against the real stack: find functions, read a
function's config and code, invoke through the generated form (valid and invalid input), watch
records arrive without a reload, promote a staged revision past the compatibility gate and roll
back, redrive a dead letter, read the charts; at a laptop's and at a phone's width."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, expect

from tests.console.browser import ConsoleErrors, artifacts_dir, chromium
from tests.helpers import Fn, MakeFunction, Stack

GREETER = """
def handler(event, context):
    print("greeting", event["name"])
    return {"greeting": "Hello, " + event["name"], "times": event.get("times", 1)}
"""
LEDGER = 'exports.handler = async () => { throw new Error("the ledger is down"); };\n'
INPUT = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "description": "who to greet"},
        "times": {"type": "integer", "minimum": 1},
        "mood": {"enum": ["calm", "loud"]},
    },
    "required": ["name"],
}
# The browser logs every 4xx the page provokes on purpose as "Failed to load resource";
# those are API answers under test, not page errors. Anything else fails the test.
EXPECTED_ANSWERS = ("status of 409",)

pytestmark = pytest.mark.timeout(120)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


async def open_console(
    browser: Browser, stack: Stack, width: int = 1280
) -> tuple[Page, ConsoleErrors]:
    page = await browser.new_page(viewport={"width": width, "height": 900})
    errors = ConsoleErrors(page)
    await page.goto(f"{stack.api}/console")
    await expect(page.locator("#token-dialog")).to_be_visible()
    await page.fill("#token-input", stack.token)
    await page.keyboard.press("Enter")  # the dialog's form submits with its first button
    return page, errors


def unexpected(errors: ConsoleErrors) -> list[str]:
    return [e for e in errors.seen if not any(allowed in e for allowed in EXPECTED_ANSWERS)]


async def shot(page: Page, name: str) -> None:
    # The body, not the viewport: as tall as what the page shows, no empty space below.
    await page.locator("body").screenshot(path=str(artifacts_dir() / f"{name}.png"))


@pytest_asyncio.fixture(loop_scope="session")
async def two(make_function: MakeFunction) -> tuple[Fn, Fn]:
    collection = f"console-{uuid.uuid4().hex[:6]}"
    greeter = await make_function(
        {"index.py": GREETER},
        runtime="python",
        collection=collection,
        name="greeter",
        schema={"input": INPUT},
    )
    ledger = await make_function(
        {"index.js": LEDGER},
        collection=collection,
        name="ledger",
        async_config={"max_attempts": 1, "backoff_ms": 100},
    )
    return greeter, ledger


async def test_a_user_finds_invokes_watches_promotes_and_redrives(
    browser: Browser, stack: Stack, http: httpx.AsyncClient, two: tuple[Fn, Fn]
) -> None:
    greeter, ledger = two
    expect.set_options(timeout=15_000)
    schedule = await http.post(
        f"{greeter.path}/schedules",
        json={"name": "new-year", "cron": "0 0 0 1 1 *", "payload": {"name": "year"}},
    )
    assert schedule.status_code == 201, schedule.text
    hook = f"/hooks/{greeter.collection}"
    route = await http.post(
        "/compute/triggers",
        json={
            "type": "http",
            "method": "POST",
            "path": hook,
            "function": {"collection_topic": greeter.collection, "service": greeter.service},
        },
    )
    assert route.status_code == 201, route.text
    page, errors = await open_console(browser, stack)

    # Functions: both listed under their collection; the filter narrows to one.
    listing = page.locator(f'section[aria-label="Collection {greeter.collection}"]')
    await expect(listing.locator("tr", has_text="greeter")).to_contain_text("python")
    await expect(listing.locator("tr", has_text="ledger")).to_contain_text("nodejs")
    await page.fill("#function-filter", "ledg")
    await expect(listing.locator("tbody tr")).to_have_count(1)
    await expect(page.locator("#sandbox")).to_contain_text("sandbox")
    await shot(page, "functions")
    await page.fill("#function-filter", greeter.collection)
    await listing.get_by_role("link", name="greeter").click()

    # A function: its config and its code.
    await expect(page.locator("h1")).to_have_text("greeter")
    await expect(page.locator("#schema-input")).to_contain_text('"minLength": 1')
    await expect(page.locator("#triggers")).to_contain_text("schedule new-year: cron 0 0 0 1 1 *")
    await expect(page.locator("#triggers")).to_contain_text(f"POST /r{hook} · token · production")
    await shot(page, "function")
    await page.get_by_role("link", name="Code").click()
    await expect(page.locator("pre.source")).to_contain_text('print("greeting", event["name"])')

    # Invoke through the generated form: the invalid input is marked with the server's words.
    await page.get_by_role("link", name="Invoke").click()
    await page.locator('[data-path="/times"] input').fill("0")
    await page.get_by_role("button", name="Invoke").click()
    name_error = page.locator('[data-path="/name"] .field-error')
    times_error = page.locator('[data-path="/times"] .field-error')
    await expect(name_error).to_have_text("'name' is a required property")
    await expect(times_error).to_have_text("0 is less than the minimum of 1")
    server = await http.post(f"{greeter.path}/invoke", json={"payload": {"times": 0}})
    assert server.status_code == 400
    assert sorted(d["message"] for d in server.json()["details"]) == sorted(
        [await name_error.inner_text(), await times_error.inner_text()]
    )
    await shot(page, "invoke-invalid")
    # JSON edited in the raw box comes back into the form; JSON the form cannot hold stays.
    await page.locator("#invoke-raw").check()
    await page.fill("#invoke-json", '{"name": "Zed", "times": 3}')
    await page.locator("#invoke-raw").uncheck()
    await expect(page.locator('[data-path="/name"] input')).to_have_value("Zed")
    await expect(page.locator('[data-path="/times"] input')).to_have_value("3")
    await page.locator("#invoke-raw").check()
    await page.fill("#invoke-json", '{"nickname": "Z"}')
    await page.locator("#invoke-raw").click()  # refused: it stays ticked
    await expect(page.locator("#invoke-raw")).to_be_checked()
    await expect(page.locator("#raw-errors")).to_contain_text("no field for nickname")
    await page.fill("#invoke-json", "{}")
    await page.locator("#invoke-raw").uncheck()
    await page.locator('[data-path="/name"] input').fill("Ada")
    await page.locator('[data-path="/times"] input').fill("2")
    await page.locator('[data-path="/mood"] select').select_option("calm")
    await page.get_by_role("button", name="Invoke").click()
    await expect(page.locator("#invoke-status")).to_have_text("HTTP 200")
    await expect(page.locator("#invoke-result")).to_contain_text('"greeting": "Hello, Ada"')
    await expect(page.locator("#invoke-record .logs")).to_contain_text("greeting Ada")
    await shot(page, "invoke")

    # Invocations: a record made elsewhere appears without a reload, logs expandable.
    await page.get_by_role("link", name="Invocations").click()
    await expect(page.locator("#live-state")).to_have_text("live")
    made = await http.post(f"{greeter.path}/invoke", json={"payload": {"name": "Grace"}})
    assert made.status_code == 200, made.text
    fresh = page.locator(f'li[data-id="{made.headers["X-Invocation-Id"]}"]')
    await expect(fresh).to_have_attribute("data-status", "succeeded")
    await fresh.locator("summary").click()
    await expect(fresh.locator(".logs")).to_contain_text("greeting Grace")
    # The one failure is the invalid payload sent to the server above.
    await page.select_option("#status-filter", "failed")
    await expect(page.locator("#invocation-list li")).to_have_count(1)
    await expect(page.locator("#invocation-list li")).to_contain_text("failed")
    await page.select_option("#status-filter", "succeeded")
    await expect(page.locator("#invocation-list li")).to_have_count(2)
    await page.select_option("#status-filter", "")
    await shot(page, "invocations")

    # Charts: the records' figures.
    await page.get_by_role("link", name="Charts").click()
    await expect(page.locator("#chart-summary")).to_contain_text("Invocations")
    await expect(page.locator("svg.chart polyline.p50")).to_have_count(1)
    await shot(page, "charts")

    # Revisions: a staged revision that narrows the input is gated (409, its details), then
    # forced; rolling back to r1 passes the gate.
    narrower = {**INPUT, "required": ["name", "times"]}
    staged = await http.patch(f"{greeter.path}?promote=false", json={"schema": {"input": narrower}})
    assert staged.status_code == 200, staged.text
    await page.get_by_role("link", name="Revisions").click()
    await page.get_by_role("button", name="Promote to r2").click()
    outcome = page.locator("#alias-outcome")
    await expect(outcome).to_contain_text("(409 incompatible_schema)")
    await expect(outcome).to_contain_text("times")
    await shot(page, "revisions-gate")
    await page.locator("#force-alias").click()
    await expect(outcome).to_contain_text("production now points at r2 (forced)")
    await expect(page.locator(".meta")).to_contain_text("production r2")
    assert await production_of(http, greeter) == 2
    await page.get_by_role("button", name="Roll back to r1").click()
    await expect(outcome).to_contain_text("production now points at r1.")
    assert await production_of(http, greeter) == 1

    # Dead letters: an Async call of the failing ledger, redriven from its page.
    failed = await http.post(
        f"{ledger.path}/invoke", json={"payload": {}, "invocation_type": "Async"}
    )
    invocation_id = failed.json()["body"]["invocation_id"]
    first_failure = await failed_again(http, ledger, invocation_id, after=0)
    await page.goto(
        f"{stack.api}/console#/functions/{ledger.collection}/{ledger.service}/invocations"
    )
    letter = page.locator(f'#dead-letters li[data-id="{invocation_id}"]')
    await expect(letter).to_contain_text("the ledger is down")
    await letter.get_by_role("button", name="Redrive").click()
    await expect(letter).to_contain_text(f"queued again as {invocation_id}")
    record = (await http.get(f"{ledger.path}/invocations/{invocation_id}")).json()["body"]
    assert record["status"] in ("queued", "running", "failed")
    # It really ran again: the ledger is still down, so a newer dead letter follows.
    assert await failed_again(http, ledger, invocation_id, after=first_failure) > first_failure
    await shot(page, "dead-letters")

    # Back on the list, the last hour's figures of both.
    await page.goto(f"{stack.api}/console")
    await page.fill("#function-filter", greeter.collection)
    await expect(listing.locator("tr", has_text="greeter")).to_contain_text("33.3%")
    await shot(page, "functions-figures")

    assert unexpected(errors) == []


async def production_of(http: httpx.AsyncClient, fn: Fn) -> int:
    answer = await http.get(f"{fn.path}/aliases/production")
    number: int = answer.json()["body"]["revision_number"]
    return number


async def failed_again(http: httpx.AsyncClient, fn: Fn, invocation_id: str, *, after: int) -> int:
    """When the invocation's dead letter says it failed, once that is later than ``after``."""
    for _ in range(100):  # the one attempt fails at once; the dead letter follows it
        answer = await http.get(f"{fn.path}/dead-letters")
        letters: list[dict[str, Any]] = answer.json()["body"]["results"]
        for letter in letters:
            if letter["invocation_id"] == invocation_id and letter["failed_at"] > after:
                failed_at: int = letter["failed_at"]
                return failed_at
        await asyncio.sleep(0.2)
    raise AssertionError(f"no dead letter of {invocation_id} after {after}")


HOSTILE = "<img src=x onerror=\"document.title='owned'\">"


async def test_a_phone_width_keyboard_only_and_hostile_text_stay_safe(
    browser: Browser, stack: Stack, http: httpx.AsyncClient, make_function: MakeFunction
) -> None:
    """At a phone's width nothing runs off the side; the token, the filter and a function are
    reached with the keyboard alone; a handler's HTML in its logs is shown as text."""
    fn = await make_function(
        {"index.js": f"exports.handler = async () => {{ console.log({HOSTILE!r}); return 1; }};\n"},
        collection=f"console-{uuid.uuid4().hex[:6]}",
        name="phone",
    )
    made = await http.post(f"{fn.path}/invoke", json={"payload": {}})
    assert made.status_code == 200, made.text
    page = await browser.new_page(viewport={"width": 390, "height": 844})
    errors = ConsoleErrors(page)
    await page.goto(f"{stack.api}/console")
    await expect(page.locator("#token-input")).to_be_focused()
    await page.keyboard.type(stack.token)
    await page.keyboard.press("Enter")
    await expect(page.locator("#function-list table").first).to_be_visible()
    await page.keyboard.press("Tab")  # from the main region to its first control: the filter
    await expect(page.locator("#function-filter")).to_be_focused()
    await page.keyboard.type(fn.collection)
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="phone")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("h1")).to_have_text("phone")
    await page.goto(f"{stack.api}/console#/functions/{fn.collection}/{fn.service}/invocations")
    item = page.locator(f'li[data-id="{made.headers["X-Invocation-Id"]}"]')
    await item.locator("summary").focus()
    await page.keyboard.press("Enter")
    await expect(item.locator(".logs")).to_contain_text(HOSTILE)
    assert await item.locator(".logs img").count() == 0
    assert await page.title() != "owned"
    await shot(page, "phone-invocations")
    for path in ("", f"#/functions/{fn.collection}/{fn.service}"):
        await page.goto(f"{stack.api}/console{path}")
        await expect(page.locator("main h1")).to_be_visible()
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path or 'functions'}: the page is {width} px wide at 390"
    await shot(page, "phone-function")
    await page.goto(f"{stack.api}/console#/functions/%E0%A4%A/{fn.service}")
    await expect(page.locator("main h1")).to_have_text("Not found")
    assert unexpected(errors) == []


async def test_the_console_files_are_served_with_a_strict_policy(http: httpx.AsyncClient) -> None:
    page = await http.get("/console", headers={"Authorization": ""})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    script = await http.get("/console/app.js", headers={"Authorization": ""})
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    again = await http.get("/console/app.js", headers={"If-None-Match": script.headers["etag"]})
    assert again.status_code == 304
    too_long = "a" * 300 + ".js"  # longer than a file name may be: not a 500 (ENAMETOOLONG)
    for missing in (
        "/console/nope.js",
        "/console/..%2Fconsole.py",
        "/console/index.html",
        f"/console/{too_long}",
    ):
        answer = await http.get(missing)
        assert answer.status_code == 404, missing
        assert answer.json()["code"] == "not_found"
