"""The console's files as console.py finds them: every .js and .css of console_ui/, and a name
a caller asks for is only looked up, so unknown names cost nothing to keep."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from executor.api import console
from schemas.errors import NotFound


def cached_entries() -> int:
    return sum(
        value.cache_info().currsize
        for value in vars(console).values()
        if callable(getattr(value, "cache_info", None))
    )


def test_every_script_and_style_is_served_and_nothing_else() -> None:
    shipped = {p.name for p in console.UI.iterdir() if p.suffix in (".js", ".css")}
    assert shipped and set(console._files()) == shipped


async def test_names_asked_for_are_not_remembered() -> None:
    console._files()
    before = cached_entries()
    for n in range(200):
        request = Request({"type": "http", "path_params": {"asset": f"missing-{n}.js"}})
        with pytest.raises(NotFound):
            await console.console_file(request)
    assert cached_entries() == before
