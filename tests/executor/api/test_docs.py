"""GET /docs: the API viewer loads from the API itself (vendored files, nothing from elsewhere),
behind the same access rule as /openapi.json."""

from __future__ import annotations

import re

from executor.api.docs import ASSETS, VENDORED
from tests.executor.api.bare_app import client

ATTRIBUTE_URL = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']*)["']""", re.I)


async def test_the_page_and_every_file_it_references_load_from_the_api() -> None:
    async with client(ops_open=True) as http:
        page = await http.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        html = page.text
        assert "://" not in html and "//" not in html.replace("<!doctype", "")  # no other host
        referenced = [u for u in ATTRIBUTE_URL.findall(html) if not u.startswith("data:")]
        assert sorted(referenced) == [
            "docs/init.js",
            "docs/swagger-ui-bundle.js",
            "docs/swagger-ui.css",
        ]
        types = {}
        for url in referenced:
            answer = await http.get(f"/{url}")  # relative to /docs
            assert answer.status_code == 200, url
            assert len(answer.content) > 0
            types[url.rsplit("/", 1)[1]] = answer.headers["content-type"]
        init = (await http.get("/docs/init.js")).text
    assert types == {
        "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
        "swagger-ui.css": "text/css; charset=utf-8",
        "init.js": "text/javascript; charset=utf-8",
    }
    assert '"openapi.json"' in init and "validatorUrl: null" in init and "://" not in init


async def test_only_the_viewers_files_are_served() -> None:
    async with client(ops_open=True) as http:
        for name in ("LICENSE", "README.md", "../docs.py", "nope.js"):
            answer = await http.get(f"/docs/{name}")
            assert answer.status_code == 404, name
            assert answer.json()["code"] == "not_found"
    assert all((VENDORED / name).is_file() for name in ASSETS if name != "init.js")
    assert (VENDORED / "LICENSE").is_file() and (VENDORED / "README.md").is_file()


async def test_the_viewer_needs_a_token_where_the_document_does() -> None:
    async with client(ops_open=False) as http:
        for path in ("/openapi.json", "/docs", "/docs/swagger-ui.css"):
            answer = await http.get(path)
            assert answer.status_code == 401, path
            assert answer.json()["code"] == "unauthorized"
