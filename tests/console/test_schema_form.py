"""The console's schema modules in a real Chromium: ``schema_check.js`` validate() against the
server's own ``CompiledSchema``, and ``schema_form.js``'s fields, reading and messages.

The console_ui folder is served over loopback so that the modules load as real ES modules.
A value goes to the server as the console sends it: the page's ``JSON.stringify``, decoded by
the server's decoder (so 1.0 arrives as the int 1, as it would from the console).
"""

from __future__ import annotations

import json
import random
import threading
import unicodedata
from collections.abc import AsyncIterator, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Dialog, Page

import executor.api
from schemas.codec import decode_json
from schemas.schema_checks import check_schema
from schemas.validation import CompiledSchema
from schemas.validation_guards import compiled_pattern
from tests.console.browser import ConsoleErrors, chromium

UI = Path(executor.api.__file__).parent / "console_ui"
# The data: icon keeps Chromium from asking for /favicon.ico (a 404 is a console error).
BLANK = b"<!doctype html><link rel=icon href='data:,'><title>schema form</title><main></main>"


class _Static(SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path != "/blank.html":
            super().do_GET()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(BLANK)))
        self.end_headers()
        self.wfile.write(BLANK)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def ui_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Static, directory=str(UI)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest_asyncio.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


class _Tab:
    """The module's one page (a new one costs a new browser context), with what it reported."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors = ConsoleErrors(page)
        self.dialogs: list[str] = []
        page.on("dialog", self._dismiss)

    async def _dismiss(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        await dialog.dismiss()

    def assert_quiet(self) -> None:
        assert self.errors.seen == []
        assert self.dialogs == []


@pytest_asyncio.fixture(scope="module")
async def tab(browser: Browser, ui_url: str) -> AsyncIterator[_Tab]:
    tab = _Tab(await browser.new_page())
    await tab.page.goto(f"{ui_url}/blank.html")
    yield tab
    await tab.page.close()
    tab.assert_quiet()


@pytest.fixture
def checker(tab: _Tab) -> Iterator[Page]:
    """The page as it is, for calls into the modules."""
    yield tab.page
    tab.assert_quiet()


@pytest_asyncio.fixture
async def page(tab: _Tab, ui_url: str) -> AsyncIterator[Page]:
    """The page reloaded: a fresh document and fresh module instances."""
    await tab.page.goto(f"{ui_url}/blank.html")
    yield tab.page
    tab.assert_quiet()


CHECK = """async ([schemaText, valueText]) => {
  const { validate, understands } = await import("/schema_check.js");
  const schema = JSON.parse(schemaText);
  const value = JSON.parse(valueText);
  return { errors: validate(schema, value), understood: understands(schema),
           sent: JSON.stringify(value) };
}"""


async def _check(page: Page, schema: Any, value: Any) -> tuple[list[Any], bool, list[Any]]:
    """(the console's errors, whether it understands the schema, the server's errors)."""
    check_schema(schema, "/schema/input")  # only schemas the server would take
    got = await page.evaluate(CHECK, [json.dumps(schema), json.dumps(value)])
    server = CompiledSchema(decode_json(json.dumps(schema))).errors(decode_json(got["sent"]))
    return got["errors"], got["understood"], server


D7 = "http://json-schema.org/draft-07/schema#"
OBJECT_OF_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
NESTED = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["id"],
        "properties": {"tags": {"type": "array", "items": {"type": "string", "maxLength": 3}}},
    },
}
CASES: list[tuple[str, Any, Any]] = [
    ("type string", {"type": "string"}, 5),
    ("integer vs float", {"type": "integer"}, 1.5),
    ("1.0 is sent as 1", {"type": "integer"}, 1.0),
    ("true is no integer", {"type": "integer"}, True),
    ("false is no number", {"type": "number"}, False),
    ("list of types", {"type": ["string", "null"]}, 3),
    ("null", {"type": "object"}, None),
    ("repr of a list", {"type": "object"}, [1, "a", None, True, 2.5]),
    ("repr of a dict", {"type": "array"}, {"a": 1, "b": [None, False], "c": {}}),
    ("tiny float", {"type": "string"}, 1e-7),
    ("float exponents", {"items": {"type": "string"}}, [1e-5, 0.0001, -1.5e-10, 1e21, 1e300]),
    ("big integers", {"items": {"type": "string"}}, [2**60, 1e16, 123456789.125, -0.0]),
    ("unicode and escapes", {"type": "integer"}, "naïve 😀 \t\n\r\x00\x7f\xa0\u200b\u2028\\ é"),
    ("quotes", {"items": {"type": "integer"}}, ["it's", 'say "hi"', "both ' and \"", "\\'"]),
    ("required", {"required": ["name", "it's", "ünï"]}, {"age": 1}),
    ("enum", {"enum": ["a", 1, None, True, [1], {"k": "v"}]}, "b"),
    ("enum keeps true apart from 1", {"enum": [True, [1]]}, [True]),
    ("enum 1 is 1.0", {"enum": [1.5, 2]}, 2.0),
    ("const object", {"const": {"a": [1, 2]}}, {"a": [1, 2, 3]}),
    ("const false vs 0", {"const": False}, 0),
    ("minimum and maximum", {"prefixItems": [{"minimum": 5}, {"maximum": 5}]}, [4, 5.5]),
    ("exclusive bounds", {"exclusiveMinimum": 0, "exclusiveMaximum": 10, "type": "array"}, 0),
    ("exclusive maximum", {"exclusiveMaximum": 10}, 10),
    ("multipleOf int", {"multipleOf": 3}, 10),
    ("multipleOf int, float value", {"multipleOf": 2}, 7.5),
    ("multipleOf float, float error", {"multipleOf": 0.1}, 0.3),
    ("multipleOf float fits", {"multipleOf": 0.5}, 2.5),
    ("minLength", {"items": {"minLength": 3}, "prefixItems": [{"minLength": 1}]}, ["", "ab"]),
    ("maxLength counts code points", {"maxLength": 2}, "😀😀"),
    (
        "maxLength too long",
        {"items": {"maxLength": 1}, "prefixItems": [{"maxLength": 0}]},
        ["a", "😀😀"],
    ),
    ("$ matches before a final newline", {"pattern": "^a+$"}, "aaa\n"),
    ("$ not before two", {"pattern": "^a+$"}, "aaa\n\n"),
    ("\\d is Unicode", {"items": {"pattern": "^\\d+$"}}, ["١٢٣", "12a"]),
    ("\\w is Unicode", {"items": {"pattern": "^\\w+$"}}, ["naïve", "naïve-x", "日本"]),
    ("\\s and \\b", {"items": {"pattern": "\\bcat\\b\\s"}}, ["cat\u3000", "concat ", "é cat "]),
    (". takes \\r", {"items": {"pattern": "^.$"}}, ["\r", "\u2028", "\n"]),
    ("named groups", {"pattern": "(?P<x>a)(?P=x)"}, "ab"),
    ("escaped punctuation", {"items": {"pattern": "^a\\-b[\\-x]\\.$"}}, ["a-b-.", "ab-x"]),
    ("minItems", {"prefixItems": [{"minItems": 1}, {"minItems": 2}]}, [[], [1]]),
    ("maxItems", {"prefixItems": [{"maxItems": 0}, {"maxItems": 1}]}, [[1], [1, 2]]),
    ("uniqueItems true is not 1", {"uniqueItems": True}, [1, True, [1], [True]]),
    ("uniqueItems 1 is 1.0", {"uniqueItems": True}, [1, 1.0]),
    ("uniqueItems objects", {"uniqueItems": True}, [{"a": 1, "b": 2}, {"b": 2, "a": 1}]),
    ("items", {"items": {"type": "integer"}}, [1, "x", 2.5]),
    (
        "prefixItems and items false",
        {"prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False},
        ["a", "b", "c", "d"],
    ),
    ("one extra item", {"prefixItems": [{}], "items": False}, [1, 2]),
    (
        "nested properties",
        {"properties": {"a": {"properties": {"b": {"type": "string"}}}}},
        {"a": {"b": 1}},
    ),
    (
        "pointer escaping",
        {"properties": {"a/b": {"type": "string"}, "c~d": {"type": "string"}, "~1": False}},
        {"a/b": 1, "c~d": 2, "~1": 3},
    ),
    (
        "additionalProperties false sorts by code point",
        {"properties": {"a": {}}, "additionalProperties": False},
        {"a": 1, "z": 1, "é": 2, "b": 3, "😀": 1, "\uffff": 1},
    ),
    ("additionalProperties schema", OBJECT_OF_STRINGS, {"x": 1, "y": "ok", "z": [2]}),
    (
        "patternProperties",
        {"patternProperties": {"^x-": {"type": "integer"}}, "additionalProperties": False},
        {"x-a": "s", "y": 1},
    ),
    (
        "minProperties",
        {"properties": {"a": {"minProperties": 1}, "b": {"minProperties": 2}}},
        {"a": {}, "b": {"k": 1}},
    ),
    (
        "maxProperties",
        {"properties": {"a": {"maxProperties": 0}, "b": {"maxProperties": 1}}},
        {"a": {"k": 1}, "b": {"k": 1, "l": 2}},
    ),
    ("deep nesting", NESTED, [{"id": 1, "tags": ["abcd", "ok", 5]}, {}]),
    (
        "order: keywords as written",
        {
            "properties": {"a": {"type": "string", "minLength": 5}},
            "required": ["b"],
            "type": "object",
        },
        {"a": 1},
    ),
    ("false schema", {"properties": {"a": False}}, {"a": 1}),
    ("at most 20 errors", {"items": {"type": "string"}}, list(range(30))),
    ("allOf", {"allOf": [{"type": "string"}, {"minimum": 2}]}, 1),
    ("anyOf", {"anyOf": [{"type": "string"}, {"minimum": 2}]}, 1),
    ("oneOf none", {"oneOf": [{"type": "string"}, {"type": "null"}]}, 1),
    ("oneOf many", {"oneOf": [{"type": "integer"}, {"minimum": 0}, {"maximum": 5}]}, 1),
    ("not", {"not": {"type": "integer", "enum": [1, "x"]}}, 1),
    (
        "if then else",
        {"if": {"type": "string"}, "then": {"minLength": 3}, "else": {"minimum": 5}},
        2,
    ),
    (
        "$ref to $defs",
        {
            "$defs": {"s": {"type": "string"}},
            "properties": {"a": {"$ref": "#/$defs/s", "minLength": 5}},
        },
        {"a": "ab"},
    ),
    (
        "recursive $ref",
        {"properties": {"next": {"$ref": "#"}, "v": {"type": "integer"}}},
        {"v": 1, "next": {"v": "x", "next": {"v": 2.5}}},
    ),
    (
        "dependentRequired",
        {"dependentRequired": {"card": ["cvc", "expiry"]}},
        {"card": 1, "expiry": 2},
    ),
    ("propertyNames", {"propertyNames": {"maxLength": 2}}, {"ab": 1, "abc": 2}),
    ("contains none", {"contains": {"type": "string"}}, [1, 2]),
    ("contains too few", {"contains": {"type": "string"}, "minContains": 2}, ["a", 2]),
    ("contains too many", {"contains": {"type": "string"}, "maxContains": 1}, ["a", "b"]),
    ("format is not asserted", {"format": "email", "type": "string"}, "not an email"),
    (
        "draft 7: $ref hides its siblings",
        {
            "$schema": D7,
            "definitions": {"s": {"type": "string"}},
            "properties": {
                "a": {"$ref": "#/definitions/s", "minLength": 5},
                "b": {"$ref": "#/definitions/s"},
            },
        },
        {"a": "ab", "b": 1},
    ),
    ("valid", {"type": "object", "properties": {"a": {"type": "string"}}}, {"a": "x"}),
]


@pytest.mark.parametrize(("schema", "value"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_validate_gives_the_servers_details(checker: Page, schema: Any, value: Any) -> None:
    errors, understood, server = await _check(checker, schema, value)
    assert errors == server  # order included: both walk keywords in the schema's order
    assert understood


# Schemas validate() is not sure of: it says so, and reports only what the server reports.
UNSURE: list[tuple[str, Any, Any]] = [
    (
        "draft 4 minimum",
        {"$schema": "http://json-schema.org/draft-04/schema#", "minimum": 5, "type": "integer"},
        2.5,
    ),
    (
        "unevaluatedProperties",
        {"unevaluatedProperties": False, "properties": {"a": {"type": "string"}}},
        {"a": 1, "b": 2},
    ),
    ("inline flags", {"pattern": "(?i)^abc$", "maxLength": 2}, "ABD"),
    (
        "anyOf over an unsure branch",
        {"anyOf": [{"pattern": "(?i)a"}, {"type": "integer"}], "type": "string"},
        5,
    ),
    (
        "nested $id",
        {
            "$defs": {"a": {"$id": "https://example.com/a", "type": "string"}},
            "properties": {"x": {"$ref": "#/$defs/a"}, "y": {"type": "string"}},
        },
        {"x": 1, "y": 2},
    ),
    (
        "unknown json-schema.org $schema",
        {"$schema": "https://json-schema.org/draft/next/schema", "type": "string"},
        1,
    ),
]


@pytest.mark.parametrize(("schema", "value"), [c[1:] for c in UNSURE], ids=[c[0] for c in UNSURE])
async def test_validate_reports_only_what_the_server_does(
    checker: Page, schema: Any, value: Any
) -> None:
    errors, understood, server = await _check(checker, schema, value)
    assert not understood
    remaining = iter(server)
    assert all(error in remaining for error in errors), (errors, server)


async def test_known_gap_schema_floats_print_as_ints(checker: Page) -> None:
    """JS cannot tell 1.0 from 1: a schema number written 1.0 prints as 1 in the console."""
    errors, _, server = await _check(checker, {"minimum": 1.0}, 0)
    assert server == [{"path": "/", "message": "0 is less than the minimum of 1.0"}]
    assert errors == [{"path": "/", "message": "0 is less than the minimum of 1"}]


FORM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "count", "agree", "color", "address"],
    "properties": {
        "name": {"type": "string", "title": "Your name", "minLength": 2},
        "bio": {"type": "string", "maxLength": 500, "description": "A few lines"},
        "count": {"type": "integer", "minimum": 1, "maximum": 10, "default": 3},
        "ratio": {"type": "number"},
        "agree": {"type": "boolean"},
        "newsletter": {"type": "boolean"},
        "color": {"enum": ["red", "green", "blue"]},
        "size": {"enum": ["S", "M"]},
        "address": {
            "type": "object",
            "title": "Postal address",
            "required": ["city"],
            "properties": {
                "city": {"type": "string"},
                "zip": {"type": "string", "pattern": "^\\d{5}$"},
            },
        },
        "tags": {"type": "array", "items": {"type": "string"}},
    },
}

RENDER = """async (schema) => {
  const { renderForm } = await import("/schema_form.js");
  window.check = await import("/schema_check.js");
  window.schema = schema;
  window.form = renderForm(schema, document.querySelector("main"), { idPrefix: "t" });
}"""
READ = "() => window.form.read()"
READ_AND_SHOW = """() => {
  const { value, problems } = window.form.read();
  const details = [...problems, ...window.check.validate(window.schema, value)];
  window.form.showErrors(details);
  return { value, details };
}"""


def _in(path: str, inner: str = "") -> str:
    return f'[data-path="{path}"] {inner}'.strip()


async def _errors_at(page: Page, path: str) -> str:
    return await page.locator(_in(path, "> .field-error")).inner_text()


async def test_fields_match_the_schema(page: Page) -> None:
    await page.evaluate(RENDER, FORM_SCHEMA)
    name = page.locator(_in("/name", "input"))
    assert await name.get_attribute("type") == "text"
    assert await name.get_attribute("aria-required") == "true"
    label = page.locator(_in("/name", "label"))
    assert await label.get_attribute("for") == await name.get_attribute("id")
    assert await label.inner_text() == "name *"
    assert await page.locator(_in("/name", ".hint")).inner_text() == "Your name"
    described = (await name.get_attribute("aria-describedby") or "").split()
    error_id = await page.locator(_in("/name", ".field-error")).get_attribute("id")
    assert error_id in described
    assert await page.locator(_in("/bio", "textarea")).count() == 1
    assert await page.locator(_in("/bio", "label")).inner_text() == "bio"
    count = page.locator(_in("/count", "input"))
    assert [await count.get_attribute(a) for a in ("type", "step", "min", "max")] == [
        "number",
        "1",
        "1",
        "10",
    ]
    assert await count.input_value() == "3"
    assert await page.locator(_in("/ratio", "input")).get_attribute("step") == "any"
    assert await page.locator(_in("/agree", "input")).get_attribute("type") == "checkbox"
    newsletter = page.locator(_in("/newsletter", "option"))
    assert await newsletter.all_inner_texts() == ["(unset)", "true", "false"]
    assert await page.locator(_in("/color", "option")).all_inner_texts() == ["red", "green", "blue"]
    assert await page.locator(_in("/size", "option")).all_inner_texts() == ["(unset)", "S", "M"]
    assert await page.locator(_in("/address", "> legend")).inner_text() == "address *"
    assert (
        await page.locator("fieldset" + _in("/address", "> .hint")).inner_text() == "Postal address"
    )
    assert await page.locator(_in("/address/city", "input")).count() == 1
    assert await page.locator(_in("/tags", "textarea.json")).count() == 1
    empty = await page.evaluate(READ)
    assert empty == {
        "value": {"count": 3, "agree": False, "color": "red", "address": {}},
        "problems": [],
    }


async def test_filling_by_keyboard_reads_the_payload(page: Page) -> None:
    await page.evaluate(RENDER, FORM_SCHEMA)
    await page.locator(_in("/name", "label")).click()  # the label focuses its input
    await page.keyboard.type("Ada Lovelace")
    await page.keyboard.press("Tab")
    await page.keyboard.type("Hello\nworld")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Control+A")
    await page.keyboard.type("7")
    await page.keyboard.press("Tab")
    await page.keyboard.type("0.25")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Space")
    await page.locator(_in("/newsletter", "select")).select_option("false")
    await page.locator(_in("/color", "select")).select_option(label="blue")
    await page.locator(_in("/address/city", "input")).click()
    await page.keyboard.type("Zürich")
    await page.keyboard.press("Tab")
    await page.keyboard.type("80331")
    await page.locator(_in("/tags", "textarea")).fill('["a", "b"]')

    read = await page.evaluate(READ)
    payload = {
        "name": "Ada Lovelace",
        "bio": "Hello\nworld",
        "count": 7,
        "ratio": 0.25,
        "agree": True,
        "newsletter": False,
        "color": "blue",
        "address": {"city": "Zürich", "zip": "80331"},
        "tags": ["a", "b"],
    }
    assert read == {"value": payload, "problems": []}
    assert list(read["value"]) == list(payload)  # the schema's order
    assert CompiledSchema(FORM_SCHEMA).errors(payload) == []
    assert (
        await page.evaluate("() => window.check.validate(window.schema, window.form.read().value)")
        == []
    )


async def test_server_messages_show_under_their_fields(page: Page) -> None:
    await page.evaluate(RENDER, FORM_SCHEMA)
    await page.locator(_in("/count", "input")).fill("")
    await page.locator(_in("/ratio", "input")).click()
    await page.keyboard.type("1e")  # not a number yet: the input reports bad input
    await page.locator(_in("/address/zip", "input")).fill("123")
    await page.locator(_in("/tags", "textarea")).fill("[1, ")
    shown = await page.evaluate(READ_AND_SHOW)
    assert shown["details"][:2] == [
        {"path": "/ratio", "message": "is not a number"},
        {"path": "/tags", "message": shown["details"][1]["message"]},
    ]
    assert shown["details"][1]["message"].startswith("is not valid JSON (")
    value = shown["value"]
    assert value == {"agree": False, "color": "red", "address": {"zip": "123"}}
    assert shown["details"][2:] == CompiledSchema(FORM_SCHEMA).errors(value)

    assert await _errors_at(page, "/name") == "'name' is a required property"
    assert await _errors_at(page, "/count") == "'count' is a required property"
    assert await _errors_at(page, "/address/city") == "'city' is a required property"
    assert await _errors_at(page, "/address/zip") == "'123' does not match '^\\\\d{5}$'"
    assert await _errors_at(page, "/ratio") == "is not a number"
    assert await _errors_at(page, "/bio") == ""
    assert await page.locator(_in("/name", "input")).get_attribute("aria-invalid") == "true"
    assert await page.locator(_in("/bio", "textarea")).get_attribute("aria-invalid") is None
    assert await page.locator("[role=alert]").is_hidden()

    # A wrong type, an item inside a JSON field, and an error no field holds.
    await page.locator(_in("/tags", "textarea")).fill("[1]")
    await page.locator(_in("/name", "input")).fill("A")
    await page.locator(_in("/ratio", "input")).fill("2")
    shown = await page.evaluate(READ_AND_SHOW)
    assert await _errors_at(page, "/name") == "'A' is too short"
    assert await _errors_at(page, "/tags") == "/tags/0: 1 is not of type 'string'"
    assert await _errors_at(page, "/ratio") == ""
    unmatched = [{"path": "/", "message": "whole"}, {"path": "/x", "message": "extra"}]
    await page.evaluate("(details) => window.form.showErrors(details)", unmatched)
    alert = page.locator("[role=alert]")
    assert await alert.is_visible()
    assert await alert.inner_text() == "whole\n/x: extra"
    assert await _errors_at(page, "/name") == ""

    await page.evaluate("() => window.form.clear()")
    assert await alert.is_hidden()
    assert await page.locator(".field-error:not(:empty)").count() == 0
    assert await page.locator("[aria-invalid]").count() == 0


async def test_a_hostile_schema_renders_as_text(page: Page) -> None:
    hostile = "<img src=x onerror=alert(1)>"
    schema = {
        "type": "object",
        "title": hostile,
        "required": [hostile],
        "properties": {
            hostile: {
                "type": "string",
                "title": hostile,
                "description": "<script>alert(2)</script>",
            },
            "pick": {"enum": ["<b>bold</b>", {"<i>": 1}], "default": {"<i>": 1}},
            "nested": {
                "type": "object",
                "properties": {"x": {"type": "string", "default": hostile}},
            },
        },
    }
    await page.evaluate(RENDER, schema)
    await page.wait_for_timeout(50)  # an injected image would have failed to load by now
    main = page.locator("main")
    assert await main.locator("img, script, b, i").count() == 0
    assert (
        await page.locator(_in("/<img src=x onerror=alert(1)>", "label")).inner_text()
        == f"{hostile} *"
    )
    hint = await page.locator(".hint").first.inner_text()
    assert hint == f"{hostile} — <script>alert(2)</script>"
    assert await page.locator(_in("/pick", "option")).all_inner_texts() == [
        "(unset)",
        "<b>bold</b>",
        '{"<i>":1}',
    ]
    read = await page.evaluate(READ)
    assert read["value"] == {"pick": {"<i>": 1}, "nested": {"x": hostile}}
    await page.evaluate(READ_AND_SHOW)
    assert await _errors_at(page, "/<img src=x onerror=alert(1)>") == (
        f"'{hostile}' is a required property"
    )
    assert await main.locator("img, script").count() == 0


async def test_form_fits_object_schemas_with_properties(page: Page) -> None:
    fits = await page.evaluate(
        """async (schemas) => {
          const { formFits } = await import("/schema_form.js");
          return schemas.map(formFits);
        }""",
        [
            {"type": "object", "properties": {"a": {}}},
            {"properties": {"a": {"type": "string"}}},
            {"type": "object"},
            {"type": "object", "properties": {}},
            {"type": "array", "items": {}},
            {"type": ["object", "null"], "properties": {"a": {}}},
            True,
            None,
        ],
    )
    assert fits == [True, True, False, False, False, False, False, False]


PATTERNS = [
    "^a+$",
    "\\d{2,}",
    "^[\\w.-]+@[\\w-]+\\.\\w+$",
    "^[^\\s]+$",
    "\\Aabc\\Z",
    "(?:ab)+$",
    "(?<=a)b",
    "(?<!a)b",
    "a|b$",
    "^[\\d\\s]+$",
    "[\\D]",
    "^[\\S]+$",
    "\\W",
    "\\Bb",
    "^.*$",
    "(?P<y>x)(?P=y)",
    "\\u00e9",
    "\\x41",
    "^colou?r$",
    "\\$",
    "\\^",
    "[$.]",
    "^\\p{L}+$",
    "\\bé",
    "\\t",
    "\\-",
    "^$",
    "[^a-z]",
    "\\s$",
    "(x)\\1",
    "[\\w-]",
]
SUBJECTS = [
    "",
    "a",
    "aa\n",
    "abc",
    "abc\n",
    "ABC",
    "é",
    "١٢",
    "a b",
    "a\xa0b",
    "x@y.z",
    "é@ü.de",
    "\n",
    "\r\n",
    "a.b",
    "$",
    "^",
    "\\",
    "cat",
    "日本",
    "😀",
    "_",
    "a-b",
    "A",
    "\t",
    "ab\u2028",
    "xx",
    "\u200b",
]


async def test_patterns_search_as_the_servers_regex_does(checker: Page) -> None:
    """Each translated pattern agrees with the server's ``regex.search`` on every subject."""
    found = await checker.evaluate(
        """async ([patterns, subjects]) => {
          const { pythonPattern } = await import("/python_pattern.js");
          return patterns.map((p) => subjects.map((s) => pythonPattern(p)?.test(s) ?? null));
        }""",
        [PATTERNS, SUBJECTS],
    )
    for pattern, row in zip(PATTERNS, found, strict=True):
        expected = [compiled_pattern(pattern).search(s) is not None for s in SUBJECTS]
        assert row == expected, pattern


def _assigned(code_point: int) -> bool:
    """Assigned in the server's Unicode (Python's unicodedata); newer characters are a known gap."""
    return not 0xD800 <= code_point < 0xE000 and unicodedata.category(chr(code_point)) != "Cn"


async def test_strings_print_as_python_repr(checker: Page) -> None:
    """Every character up to U+2FFF, and a sample above, quoted and escaped as ``repr()``."""
    sample = [cp for cp in range(0x3000) if _assigned(cp)]
    sample += [cp for cp in range(0x3000, 0x110000, 101) if _assigned(cp)]
    texts = [chr(cp) for cp in sample] + ["it's", 'say "hi"', "'\"", "a\\b", "\x00\x1f\x7f\x80"]
    printed = await checker.evaluate(
        """async (texts) => {
          const { pyString } = await import("/python_repr.js");
          return texts.map(pyString);
        }""",
        texts,
    )
    assert [p for p, t in zip(printed, texts, strict=True) if p != repr(t)] == []


async def test_numbers_print_as_python_repr_after_the_json_trip(checker: Page) -> None:
    rng = random.Random(17)
    numbers = [rng.choice((1, -1)) * 10 ** rng.uniform(-12, 25) for _ in range(2000)]
    numbers += [0.1, 1e-4, 9.999e-5, 1e16, 1e21, 5e-324, 1.7976931348623157e308, 2.0**53, -0.0]
    printed = await checker.evaluate(
        """async (numbers) => {
          const { pyRepr } = await import("/python_repr.js");
          return numbers.map((n) => [pyRepr(n), JSON.stringify(n)]);
        }""",
        numbers,
    )
    assert [(p, sent) for p, sent in printed if p != repr(decode_json(sent))] == []


async def test_a_schema_made_to_explode_is_left_to_the_server(checker: Page) -> None:
    """Nested references that fan out (2**25 visits) and a pattern that backtracks forever
    must not freeze the tab: the page gives up and reports nothing, the server decides."""
    defs: dict[str, Any] = {"d0": {"type": "string"}}
    for level in range(1, 26):
        ref = {"$ref": f"#/$defs/d{level - 1}"}
        defs[f"d{level}"] = {"allOf": [ref, ref]}
    fanning = {"$defs": defs, "$ref": "#/$defs/d25"}
    found = await checker.evaluate(
        """async ([schema, subject]) => {
          const { validate } = await import("/schema_check.js");
          const { pythonPattern } = await import("/python_pattern.js");
          return {
            fanning: validate(schema, "a valid string"),
            pattern: pythonPattern("^(a+)+$"),
            backtracking: validate({ type: "string", pattern: "^(a+)+$" }, subject),
            plain: validate({ type: "string", pattern: "^(ab)+$" }, "abx"),
          };
        }""",
        [fanning, "a" * 40 + "!"],
    )
    assert found["fanning"] == []
    assert found["pattern"] is None
    assert found["backtracking"] == []
    assert found["plain"] == [{"path": "/", "message": "'abx' does not match '^(ab)+$'"}]
